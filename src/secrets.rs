//! Instance passwords at rest: sealed with XChaCha20-Poly1305 (RustCrypto
//! `chacha20poly1305`, a random 24-byte nonce per value) under a key kept
//! outside the catalog.
//!
//! The key comes from `DCS_BACKUP_SECRET_KEY` (64 hex characters; several
//! keys newest first, comma-separated, while a rotation is under way) or
//! from `DATA_DIR/secret.key`, created 0600 on first start and never
//! overwritten except by `secrets rotate`. The file holds one line per
//! key, `<key id> <64 hex>`, newest first. A key's id is derived from the
//! key itself, so replicas given the same key agree on it.
//!
//! A stored value reads `enc1:<key id>:<hex(nonce || ciphertext)>`; the
//! instance id is the associated data, so a value copied to another row
//! does not open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The environment variable that, when set, replaces the key file.
pub const KEY_ENV: &str = "DCS_BACKUP_SECRET_KEY";
/// The key file's name under the data dir.
pub const KEY_FILE: &str = "secret.key";

const PREFIX: &str = "enc1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Errors loading keys or opening a stored value. Never carries key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("secret key {0}: expected 64 hex characters per key (comma-separated, newest first)")]
    BadEnvKey(&'static str),
    #[error("secret key file {0} is malformed: expected lines `<key id> <64 hex>`")]
    BadFile(String),
    #[error("the stored password is encrypted with key {0}, which this service does not hold: give every replica the same key ({KEY_ENV} or DATA_DIR/{KEY_FILE})")]
    UnknownKey(String),
    #[error("the stored password does not open with key {0} (wrong key or altered value)")]
    Open(String),
    #[error("the stored password is malformed")]
    Malformed,
    #[error("no secret key is configured for instance passwords")]
    NoKey,
}

/// One 256-bit key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; 32],
}

impl Key {
    fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("dcs-backup secret key id v1");
        h.update(&bytes);
        let id = hex::encode(&h.finalize().as_bytes()[..4]);
        Self { id, bytes }
    }

    fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s.trim()).ok()?;
        let bytes: [u8; 32] = v.try_into().ok()?;
        Some(Self::from_bytes(bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

/// Where the keys come from.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Env,
}

/// The keys that seal and open instance passwords, newest first.
pub struct SecretKeys {
    source: Source,
    state: RwLock<Loaded>,
}

struct Loaded {
    keys: Vec<Key>,
    /// (inode, mtime ns, len) of the key file when it was read.
    stamp: Option<(u64, i128, u64)>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKeys({:?}, {:?})", self.source, self.key_ids())
    }
}

fn file_stamp(path: &Path) -> Option<(u64, i128, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        m.len(),
    ))
}

fn parse_env(value: &str) -> Result<Vec<Key>, SecretError> {
    let keys: Option<Vec<Key>> = value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Key::from_hex)
        .collect();
    match keys {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(SecretError::BadEnvKey(KEY_ENV)),
    }
}

fn read_file(path: &Path) -> Result<Vec<Key>, SecretError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::File(shown.clone(), e))?;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (id, hex_key) = line
            .split_once(' ')
            .ok_or_else(|| SecretError::BadFile(shown.clone()))?;
        let key = Key::from_hex(hex_key).ok_or_else(|| SecretError::BadFile(shown.clone()))?;
        if key.id != id.trim() {
            return Err(SecretError::BadFile(shown));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(SecretError::BadFile(shown));
    }
    Ok(keys)
}

fn file_text(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| format!("{} {}\n", k.id, hex::encode(k.bytes)))
        .collect()
}

/// Writes `text` to `path` owner-only and durably: a 0600 temporary file
/// in the same directory, synced, renamed over `path`, directory synced.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl SecretKeys {
    /// The keys from `DCS_BACKUP_SECRET_KEY` if `env_value` is given, else
    /// from `DATA_DIR/secret.key`, which is created (0600, never
    /// overwritten) if missing.
    pub fn open(data_dir: &Path, env_value: Option<&str>) -> Result<Self, SecretError> {
        if let Some(v) = env_value {
            return Ok(Self {
                source: Source::Env,
                state: RwLock::new(Loaded {
                    keys: parse_env(v)?,
                    stamp: None,
                }),
            });
        }
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(file_text(&[Key::generate()]).as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(|e| SecretError::File(shown.clone(), e))?;
                    tracing::info!(path = %shown, "created the key for instance passwords");
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SecretError::File(shown, e)),
            }
        }
        let keys = read_file(&path)?;
        Ok(Self {
            state: RwLock::new(Loaded {
                keys,
                stamp: file_stamp(&path),
            }),
            source: Source::File(path),
        })
    }

    /// Like [`Self::open`], but never creates a key file: for commands
    /// that work on an existing catalog (`secrets rotate`, `dev seed`).
    pub fn open_existing(data_dir: &Path, env_value: Option<&str>) -> Result<Self, SecretError> {
        let path = data_dir.join(KEY_FILE);
        if env_value.is_none() && !path.exists() {
            return Err(SecretError::File(
                path.display().to_string(),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        Self::open(data_dir, env_value)
    }

    /// Keys given directly (tests, and `rotate` under an environment key).
    fn from_keys(keys: Vec<Key>) -> Self {
        Self {
            source: Source::Env,
            state: RwLock::new(Loaded { keys, stamp: None }),
        }
    }

    /// The key file, if the keys come from one.
    pub fn file(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            Source::Env => None,
        }
    }

    /// Ids of the keys held, newest first.
    pub fn key_ids(&self) -> Vec<String> {
        self.state
            .read()
            .map(|s| s.keys.iter().map(|k| k.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Re-reads the key file (a no-op for environment keys).
    fn reload(&self, only_if_changed: bool) {
        let Source::File(path) = &self.source else {
            return;
        };
        let stamp = file_stamp(path);
        if only_if_changed {
            if let Ok(s) = self.state.read() {
                if s.stamp == stamp {
                    return;
                }
            }
        }
        match read_file(path) {
            Ok(keys) => {
                if let Ok(mut s) = self.state.write() {
                    s.keys = keys;
                    s.stamp = stamp;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the key file; keeping the keys loaded")
            }
        }
    }

    fn newest(&self) -> Result<Key, SecretError> {
        self.state
            .read()
            .ok()
            .and_then(|s| s.keys.first().cloned())
            .ok_or(SecretError::NoKey)
    }

    fn find(&self, id: &str) -> Option<Key> {
        self.state
            .read()
            .ok()
            .and_then(|s| s.keys.iter().find(|k| k.id == id).cloned())
    }

    /// Seals `plain` for the row `aad` with the newest key. The key file
    /// is checked first, so a running service seals with the key a
    /// concurrent `secrets rotate` just added.
    pub fn seal(&self, plain: &str, aad: &str) -> Result<String, SecretError> {
        use rand::RngCore;
        self.reload(true);
        let key = self.newest()?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = key
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(key.id.clone()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}:{}", key.id, hex::encode(blob)))
    }

    /// Opens a value [`Self::seal`] produced for the row `aad`. An
    /// unknown key id makes the key file be read again once.
    pub fn open_value(&self, stored: &str, aad: &str) -> Result<String, SecretError> {
        let (id, blob) = parse_sealed(stored).ok_or(SecretError::Malformed)?;
        let key = match self.find(id) {
            Some(k) => k,
            None => {
                self.reload(false);
                self.find(id)
                    .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?
            }
        };
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(id.to_owned()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }

    /// The key id a stored value names, if it is a sealed value.
    pub fn sealed_key_id(stored: &str) -> Option<&str> {
        parse_sealed(stored).map(|(id, _)| id)
    }
}

/// Splits `enc1:<id>:<hex>` into the key id and the nonce+ciphertext.
fn parse_sealed(stored: &str) -> Option<(&str, Vec<u8>)> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (id, hex_blob) = rest.split_once(':')?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let blob = hex::decode(hex_blob).ok()?;
    (blob.len() >= NONCE_LEN + TAG_LEN).then_some((id, blob))
}

/// Whether a stored password is sealed (else it is plaintext from a
/// version before encryption).
pub fn is_sealed(stored: &str) -> bool {
    parse_sealed(stored).is_some()
}

/// A rotation in progress: the old keys and a fresh one.
pub struct Rotation {
    /// Seals with the new key, opens with any.
    pub keys: SecretKeys,
    new_key: Key,
    file: Option<PathBuf>,
}

impl Rotation {
    /// Step 1: a new key. With a key file, the file is rewritten (atomically,
    /// 0600) to hold the new key before the old ones, so that at every
    /// moment it holds every key some row needs.
    pub fn begin(current: &SecretKeys) -> Result<Self, SecretError> {
        let new_key = Key::generate();
        let old = current
            .state
            .read()
            .map(|s| s.keys.clone())
            .unwrap_or_default();
        let mut all = vec![new_key.clone()];
        all.extend(old.into_iter().filter(|k| k.id != new_key.id));
        let file = current.file().map(Path::to_owned);
        if let Some(path) = &file {
            replace_file(path, &file_text(&all))
                .map_err(|e| SecretError::File(path.display().to_string(), e))?;
        }
        Ok(Self {
            keys: SecretKeys::from_keys(all),
            new_key,
            file,
        })
    }

    /// The new key's id.
    pub fn new_key_id(&self) -> &str {
        &self.new_key.id
    }

    /// The new key as `DCS_BACKUP_SECRET_KEY` takes it (64 hex).
    pub fn new_key_hex(&self) -> String {
        hex::encode(self.new_key.bytes)
    }

    /// Last step, once every row is sealed with the new key: the key file
    /// keeps only the new key. Returns `false` for environment keys.
    pub fn finish(self) -> Result<bool, SecretError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        replace_file(path, &file_text(std::slice::from_ref(&self.new_key)))
            .map_err(|e| SecretError::File(path.display().to_string(), e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_row_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SecretKeys::open(dir.path(), None).unwrap();
        let sealed = keys.seal("p@ss\u{e9}", "inst-1").unwrap();
        assert!(sealed.starts_with("enc1:"));
        assert!(!sealed.contains("p@ss"));
        assert_ne!(sealed, keys.seal("p@ss\u{e9}", "inst-1").unwrap());
        assert_eq!(keys.open_value(&sealed, "inst-1").unwrap(), "p@ss\u{e9}");
        assert!(matches!(
            keys.open_value(&sealed, "inst-2"),
            Err(SecretError::Open(_))
        ));
        // Reopening the data dir keeps the key.
        let again = SecretKeys::open(dir.path(), None).unwrap();
        assert_eq!(again.open_value(&sealed, "inst-1").unwrap(), "p@ss\u{e9}");
        // Another key does not open it, and says which key it needs.
        let other = SecretKeys::open(dir.path(), Some(&"ab".repeat(32))).unwrap();
        let e = other.open_value(&sealed, "inst-1").unwrap_err();
        assert!(matches!(e, SecretError::UnknownKey(_)), "{e}");
    }

    #[test]
    fn the_key_file_is_owner_only_and_env_keys_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        SecretKeys::open(dir.path(), None).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(SecretKeys::open(dir.path(), Some("short")).is_err());
        assert!(SecretKeys::open(dir.path(), Some(&"zz".repeat(32))).is_err());
        let two = format!("{},{}", "01".repeat(32), "02".repeat(32));
        assert_eq!(
            SecretKeys::open(dir.path(), Some(&two))
                .unwrap()
                .key_ids()
                .len(),
            2
        );
    }

    #[test]
    fn only_well_formed_values_count_as_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SecretKeys::open(dir.path(), None).unwrap();
        assert!(is_sealed(&keys.seal("x", "i").unwrap()));
        // Plaintext passwords of older versions, even odd ones.
        for plain in ["hunter2", "enc1:", "enc1:abcd:00", "enc1:zzzzzzzz:00", ""] {
            assert!(!is_sealed(plain), "{plain}");
        }
    }

    #[test]
    fn rotation_keeps_old_keys_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SecretKeys::open(dir.path(), None).unwrap();
        let old = keys.seal("pw", "i").unwrap();
        let rot = Rotation::begin(&keys).unwrap();
        // Mid-rotation the file holds both keys: old rows still open, and
        // a running service seals with the new key.
        assert_eq!(read_file(&dir.path().join(KEY_FILE)).unwrap().len(), 2);
        let mid = keys.seal("pw", "i").unwrap();
        assert_eq!(SecretKeys::sealed_key_id(&mid), Some(rot.new_key_id()));
        assert_eq!(keys.open_value(&old, "i").unwrap(), "pw");
        let id = rot.new_key_id().to_owned();
        assert!(rot.finish().unwrap());
        let after = SecretKeys::open(dir.path(), None).unwrap();
        assert_eq!(after.key_ids(), vec![id]);
        assert_eq!(after.open_value(&mid, "i").unwrap(), "pw");
        assert!(after.open_value(&old, "i").is_err());
    }
}
