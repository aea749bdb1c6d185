//! A real S3-compatible server on loopback for the tests: `moto_server`
//! from the test virtualenv (`$DCS_TEST_VENV`, set by scripts/test; else
//! `.venv` in the crate), one bucket, and a tiny client to see what the
//! bucket holds without going through the code under test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::free_port;

/// Keys moto accepts (it accepts any); OpenDAL needs some.
pub const ACCESS_KEY: &str = "dcs-test-access-key";
pub const SECRET_KEY: &str = "dcs-test-secret-key";

/// Makes the S3 keys visible to everything in this test binary (the
/// configuration reads them from the environment). Process-wide, set once,
/// same values everywhere: harmless to tests that do not use S3.
pub fn set_aws_keys() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

fn moto_binary() -> PathBuf {
    let venv = std::env::var_os("DCS_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin").join("moto_server");
    assert!(
        bin.exists(),
        "{} not found: run scripts/test, or `python3 -m venv .venv && \
         .venv/bin/pip install -r tests/requirements.txt` and set DCS_TEST_VENV",
        bin.display()
    );
    bin
}

/// One plain HTTP/1.1 request on loopback, blocking; `None` if nobody
/// answers. Used only while starting, before any runtime work matters.
fn raw_request(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Authorization: {AUTH}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// moto refuses anonymous object reads; it does not check signatures, so
/// any signed-looking header makes a request "authenticated".
const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=dcs-test-access-key/20250101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0000";

/// A `moto_server` process serving S3 on `127.0.0.1:port` with one bucket.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Option<Child>,
    log_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl S3Server {
    /// Starts moto on a free port and creates the bucket.
    pub fn start() -> Self {
        set_aws_keys();
        for _ in 0..5 {
            let mut s = Self {
                port: free_port(),
                bucket: "dcs-backups".into(),
                child: None,
                log_dir: tempfile::tempdir().expect("tempdir"),
                http: reqwest::Client::new(),
            };
            if s.launch() {
                return s;
            }
            s.kill(); // port taken meanwhile: another one
        }
        panic!("moto_server would not start");
    }

    /// Spawns moto on `self.port`; true once it answers and the bucket exists.
    fn launch(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.path().join("moto.log"))
            .expect("moto log");
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("moto_server starts");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if raw_request(self.port, "GET", "/") == Some(200) {
                let made = raw_request(self.port, "PUT", &format!("/{}", self.bucket));
                assert_eq!(made, Some(200), "bucket creation: {}", self.log());
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Starts moto again on the same port (after `kill`/`stop`). moto keeps
    /// nothing across restarts: the bucket is created anew, empty.
    pub fn restart(&mut self) {
        self.kill();
        let start = Instant::now();
        while !self.launch() {
            self.kill();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server would not restart on port {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `--storage` URL for this bucket under `prefix`.
    pub fn storage_url(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&path_style=true",
            self.bucket,
            self.endpoint()
        )
    }

    /// Every key in the bucket under `prefix` (ListObjectsV2, all pages).
    pub async fn objects(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/{}?list-type=2&prefix={}",
                self.endpoint(),
                self.bucket,
                enc(prefix)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", enc(t)));
            }
            let resp = self
                .http
                .get(&url)
                .header("Authorization", AUTH)
                .send()
                .await
                .expect("list objects");
            let status = resp.status();
            let xml = resp.text().await.expect("list body");
            assert!(status.is_success(), "list objects: {status} {xml}");
            keys.extend(tags(&xml, "Key").into_iter().map(|k| unescape(&k)));
            token = tags(&xml, "NextContinuationToken").into_iter().next();
            if tags(&xml, "IsTruncated").first().map(String::as_str) != Some("true")
                || token.is_none()
            {
                return keys;
            }
        }
    }

    /// The bytes of one object, read straight from the server.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path: String = key.split('/').map(enc).collect::<Vec<_>>().join("/");
        let resp = self
            .http
            .get(format!("{}/{}/{path}", self.endpoint(), self.bucket))
            .header("Authorization", AUTH)
            .send()
            .await
            .expect("get object");
        match resp.status().as_u16() {
            200 => Some(resp.bytes().await.expect("object body").to_vec()),
            404 => None,
            s => panic!("get {key}: HTTP {s}"),
        }
    }

    /// Replaces one object's bytes, straight on the server.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        let path: String = key.split('/').map(enc).collect::<Vec<_>>().join("/");
        let resp = self
            .http
            .put(format!("{}/{}/{path}", self.endpoint(), self.bucket))
            .header("Authorization", AUTH)
            .body(bytes)
            .send()
            .await
            .expect("put object");
        assert!(resp.status().is_success(), "put {key}: {}", resp.status());
    }

    /// SIGTERM, then waits for the process to end.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL: the server vanishes mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request line moto logged so far (across restarts).
    pub fn requests(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("moto.log")).unwrap_or_default()
    }

    /// The end of the server's log, for failure messages.
    pub fn log(&self) -> String {
        let text = self.requests();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Text of every `<tag>…</tag>` in `xml` (flat; enough for ListObjectsV2).
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_owned());
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
