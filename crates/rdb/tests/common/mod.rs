//! Test plumbing: start a throw-away `redis-server` / `valkey-server` on a
//! free port with its own directory, talk RESP to it, fill it with a dataset
//! covering every type and encoding, and compare two servers' contents.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// What a server binary can do; decides which parts of the dataset exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis62,
    Redis70,
    Valkey91,
}

impl Kind {
    pub fn has_functions(self) -> bool {
        self != Kind::Redis62
    }
    pub fn has_debug_flag(self) -> bool {
        self != Kind::Redis62
    }
    pub fn has_hash_field_ttl(self) -> bool {
        self == Kind::Valkey91
    }
    pub fn has_pexpiretime(self) -> bool {
        self != Kind::Redis62
    }
}

/// Where the server binary for a kind is: Debian's `redis-server` for 7.0,
/// `DCS_TEST_REDIS62` / `DCS_TEST_VALKEY` for the others. `None` means skip.
pub fn server_binary(kind: Kind) -> Option<PathBuf> {
    let (var, default) = match kind {
        Kind::Redis70 => ("DCS_TEST_REDIS70", Some("redis-server")),
        Kind::Redis62 => ("DCS_TEST_REDIS62", None),
        Kind::Valkey91 => ("DCS_TEST_VALKEY", None),
    };
    let path = match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => match default {
            Some(d) => PathBuf::from(d),
            // Under CI a missing server is a broken install, not a skip.
            None if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
                panic!("{var} is not set under CI: scripts/test must install that server")
            }
            None => return None,
        },
    };
    let ok = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Some(path)
    } else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "{} does not run under CI: scripts/test must install it",
            path.display()
        );
        None
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub kind: Kind,
    pub bin: PathBuf,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

impl Server {
    pub fn start(bin: &Path, kind: Kind, extra: &[&str]) -> Server {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("dcs-rdb-test-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            let mut args: Vec<String> = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--save".into(),
                "".into(),
                "--appendonly".into(),
                "no".into(),
                "--logfile".into(),
                dir.join("server.log").display().to_string(),
            ];
            if kind.has_debug_flag() {
                args.push("--enable-debug-command".into());
                args.push("yes".into());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let child = Command::new(bin)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn server");
            let mut s = Server {
                child,
                port,
                dir: dir.clone(),
                kind,
                bin: bin.to_path_buf(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(mut c) = Client::try_connect(port) {
                    if matches!(c.cmd(&["PING"]), Reply::Status(ref p) if p == "PONG") {
                        return s;
                    }
                }
                if let Ok(Some(_)) = s.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
            std::mem::forget(s);
        }
        panic!("could not start {} in {}", bin.display(), dir.display());
    }

    pub fn client(&self) -> Client {
        Client::try_connect(self.port).expect("connect")
    }

    /// SAVE and return the bytes of dump.rdb.
    pub fn save_rdb(&self) -> Vec<u8> {
        let mut c = self.client();
        assert_eq!(c.cmd(&["SAVE"]), Reply::Status("OK".into()));
        std::fs::read(self.dir.join("dump.rdb")).expect("read dump.rdb")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Reply::Bulk(Some(b)) => b.clone(),
            Reply::Status(s) => s.as_bytes().to_vec(),
            other => panic!("not a string reply: {other:?}"),
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("not an integer reply: {other:?}"),
        }
    }
    pub fn array(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(a)) => a.clone(),
            other => panic!("not an array reply: {other:?}"),
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

pub struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

pub fn encode_cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "short reply",
        ));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    Ok(match line[0] {
        b'+' => Reply::Status(body),
        b'-' => Reply::Error(body),
        b':' => Reply::Int(body.parse().unwrap()),
        b'$' => {
            let n: i64 = body.parse().unwrap();
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n: i64 = body.parse().unwrap();
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_reply(r)?);
                }
                Reply::Array(Some(v))
            }
        }
        other => panic!("unexpected reply type {}", other as char),
    })
}

impl Client {
    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            w: s.try_clone()?,
            r: BufReader::new(s),
        })
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.w.write_all(&encode_cmd(args)).expect("write");
        read_reply(&mut self.r).expect("read reply")
    }

    /// Run a command that must succeed.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let r = self.cmd(args);
        if r.is_error() {
            let shown: Vec<String> = args
                .iter()
                .take(6)
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect();
            panic!("{shown:?} failed: {r:?}");
        }
        r
    }

    /// Send a whole RESP stream of `n` commands and collect the error
    /// replies (pipelined: a writer thread feeds while we read).
    pub fn pipe(&mut self, data: Vec<u8>, n: u64) -> Vec<String> {
        let mut w = self.w.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            w.write_all(&data).expect("pipe write");
        });
        let mut errors = Vec::new();
        for _ in 0..n {
            if let Reply::Error(e) = read_reply(&mut self.r).expect("pipe read") {
                errors.push(e);
            }
        }
        t.join().unwrap();
        errors
    }

    pub fn digest(&mut self) -> String {
        self.ok(&["DEBUG", "DIGEST"]).text()
    }

    /// Keys per database from INFO keyspace.
    pub fn keyspace(&mut self) -> Vec<(u64, u64)> {
        let info = self.ok(&["INFO", "keyspace"]).text();
        let mut out = Vec::new();
        for line in info.lines() {
            if let Some(rest) = line.strip_prefix("db") {
                let (db, fields) = rest.split_once(':').unwrap();
                let keys = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("keys="))
                    .unwrap();
                out.push((db.parse().unwrap(), keys.trim().parse().unwrap()));
            }
        }
        out
    }

    pub fn all_keys(&mut self, db: u64) -> Vec<Vec<u8>> {
        self.ok(&["SELECT", &db.to_string()]);
        let mut keys = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            let r = self.ok(&["SCAN", &cursor, "COUNT", "1000"]).array();
            cursor = r[0].text();
            keys.extend(r[1].array().iter().map(|k| k.bytes()));
            if cursor == "0" {
                break;
            }
        }
        keys.sort();
        keys
    }
}

/// Blank out the values that follow fields no command can set (consumer
/// seen/active times) and the radix tree's shape, so XINFO STREAM FULL of a
/// replayed stream compares. The shape is layout, not data: a trimmed
/// source keeps nodes keyed by entries it has since deleted, a replay keys
/// them by the first live entry, and the tree's node count follows the
/// bytes of those keys (about one failure in twenty when IDs straddle a
/// millisecond). RESTORE comparisons keep it.
fn normalise(r: &Reply) -> Reply {
    match r {
        Reply::Array(Some(items)) => {
            let mut out = Vec::with_capacity(items.len());
            let mut blank_next = false;
            for it in items {
                if blank_next {
                    out.push(Reply::Bulk(None));
                    blank_next = false;
                    continue;
                }
                if let Reply::Bulk(Some(b)) = it {
                    if matches!(
                        &b[..],
                        b"seen-time" | b"active-time" | b"radix-tree-keys" | b"radix-tree-nodes"
                    ) {
                        blank_next = true;
                    }
                }
                out.push(normalise(it));
            }
            Reply::Array(Some(out))
        }
        other => other.clone(),
    }
}

/// Everything about one database that must survive a backup and restore:
/// digest, key count, and per key the absolute expiry and full stream state.
pub fn snapshot(c: &mut Client, kind: Kind, exact_streams: bool) -> Vec<String> {
    let mut out = vec![format!("digest {}", c.digest())];
    for (db, n) in c.keyspace() {
        out.push(format!("db{db} keys {n}"));
        for key in c.all_keys(db) {
            let t = c.ok(&[&b"TYPE"[..], &key]).text();
            let name = String::from_utf8_lossy(&key).into_owned();
            if kind.has_pexpiretime() {
                let e = c.ok(&[&b"PEXPIRETIME"[..], &key]).int();
                out.push(format!("db{db} {name:?} {t} expire {e}"));
            } else {
                let ttl = c.ok(&[&b"PTTL"[..], &key]).int();
                out.push(format!("db{db} {name:?} {t} has-ttl {}", ttl >= 0));
            }
            if t == "stream" {
                let full = c.ok(&[&b"XINFO"[..], b"STREAM", &key, b"FULL"]);
                let full = if exact_streams {
                    full
                } else {
                    normalise(&full)
                };
                out.push(format!("db{db} {name:?} xinfo {full:?}"));
            }
            if t == "hash" && kind.has_hash_field_ttl() {
                let fields = c.ok(&[&b"HKEYS"[..], &key]).array();
                let mut args: Vec<Vec<u8>> =
                    vec![b"HPEXPIRETIME".to_vec(), key.clone(), b"FIELDS".to_vec()];
                args.push(fields.len().to_string().into_bytes());
                args.extend(fields.iter().map(|f| f.bytes()));
                let ttls = c.ok(&args);
                out.push(format!("db{db} {name:?} field-ttls {ttls:?}"));
            }
        }
    }
    out
}

/// Fill a server with every type and as many encodings as it writes.
pub fn fill_dataset(c: &mut Client, kind: Kind, big: bool) {
    let scale = if big { 1 } else { 0 };
    c.ok(&["FLUSHALL"]);
    c.ok(&["CONFIG", "SET", "rdbcompression", "yes"]);
    c.ok(&["CONFIG", "SET", "list-compress-depth", "1"]);
    if kind == Kind::Redis62 {
        c.ok(&["CONFIG", "SET", "list-max-ziplist-size", "16"]);
    } else {
        c.ok(&["CONFIG", "SET", "list-max-listpack-size", "16"]);
        // Elements above 200 bytes become plain quicklist nodes.
        c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "200"]);
    }

    // Strings: raw, integer encodings, LZF, binary, empty.
    c.ok(&["SET", "str:plain", "hello world"]);
    for (k, v) in [
        ("str:i8", "-7"),
        ("str:i16", "12345"),
        ("str:i32", "-2147483648"),
        ("str:i64", "9223372036854775807"),
    ] {
        c.ok(&["SET", k, v]);
    }
    c.ok(&["SET", "str:lzf", &"abcdefgh".repeat(500)]);
    c.ok(&["SET", "str:empty", ""]);
    c.ok(&[
        &b"SET"[..],
        b"bin:\x00\xff\r\nkey",
        b"\x00\x01\x02\xfe\xff\r\n",
    ]);
    c.ok(&["SET", &"long-key-".repeat(30), &"x".repeat(40)]);
    c.ok(&["SET", "12345", "integer key name"]);

    // Lists: small (listpack/ziplist), many nodes, compressed nodes, plain nodes.
    let ints = [
        "0",
        "127",
        "128",
        "-1",
        "-4096",
        "4095",
        "4096",
        "32767",
        "-32768",
        "8388607",
        "-8388608",
        "8388608",
        "2147483647",
        "-2147483648",
        "2147483648",
        "9223372036854775807",
        "-9223372036854775808",
        "12",
        "13",
        "007",
        "1.5",
    ];
    let mut args = vec!["RPUSH", "list:small"];
    args.extend(ints.iter());
    args.push("text");
    c.ok(&args);
    let n = 300 + 3000 * scale;
    let items: Vec<String> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                i.to_string()
            } else {
                format!("item-{i}-{}", "z".repeat(i % 40))
            }
        })
        .collect();
    for chunk in items.chunks(100) {
        let mut a = vec!["RPUSH".to_string(), "list:big".to_string()];
        a.extend(chunk.iter().cloned());
        c.ok(&a);
    }
    c.ok(&[
        "RPUSH",
        "list:plain",
        "small",
        &"P".repeat(1000),
        "tail",
        &"Q".repeat(5000),
    ]);

    // Sets: intset (16/32/64-bit), listpack (7.2+), hashtable.
    let mut a = vec!["SADD".to_string(), "set:int16".to_string()];
    a.extend((0..50).map(|i| (i * 7 - 100).to_string()));
    c.ok(&a);
    c.ok(&[
        "SADD",
        "set:int64",
        "1",
        "-9223372036854775808",
        "9223372036854775807",
        "70000",
    ]);
    c.ok(&["SADD", "set:small", "a", "b", "c", "1", "dd"]);
    let mut a = vec!["SADD".to_string(), "set:big".to_string()];
    a.extend((0..(600 + 2000 * scale)).map(|i| format!("member-{i}")));
    c.ok(&a);

    // Sorted sets: listpack/ziplist and skiplist, awkward scores.
    c.ok(&[
        "ZADD",
        "zset:small",
        "1.5",
        "a",
        "-inf",
        "b",
        "inf",
        "c",
        "0",
        "d",
        "1e300",
        "e",
        "-2.5e-10",
        "f",
        "42",
        "g",
        "0.1",
        "h",
        "3.141592653589793",
        "i",
    ]);
    let mut a = vec!["ZADD".to_string(), "zset:big".to_string()];
    for i in 0..(400 + 2000 * scale) {
        a.push(format!("{}", (i as f64) / 7.0 - 20.0));
        a.push(format!("zmember-{i}"));
    }
    c.ok(&a);
    c.ok(&[
        "ZADD",
        "zset:longmember",
        "1",
        &"m".repeat(100),
        "2",
        "short",
    ]);

    // Hashes: listpack/ziplist, hashtable by count and by value size.
    c.ok(&[
        "HSET",
        "hash:small",
        "f1",
        "v1",
        "f2",
        "2",
        "num",
        "-300",
        "empty",
        "",
    ]);
    let mut a = vec!["HSET".to_string(), "hash:big".to_string()];
    for i in 0..(600 + 2000 * scale) {
        a.push(format!("field-{i}"));
        a.push(if i % 2 == 0 {
            i.to_string()
        } else {
            format!("value-{i}")
        });
    }
    c.ok(&a);
    c.ok(&["HSET", "hash:longval", "f", &"L".repeat(200), "g", "short"]);
    // Longer strings inside a listpack/ziplist (12-bit / 14-bit lengths).
    c.ok(&["CONFIG", "SET", "hash-max-ziplist-value", "6000"]);
    c.ok(&[
        "HSET",
        "hash:lp-long",
        "f",
        &"M".repeat(500),
        "g",
        &"N".repeat(5000),
        "h",
        "-12345",
    ]);

    // Expiring keys (far future so they survive the test).
    c.ok(&["SET", "ttl:str", "bye"]);
    c.ok(&["PEXPIREAT", "ttl:str", "4102444800123"]);
    c.ok(&["RPUSH", "ttl:list", "a", "b"]);
    c.ok(&["EXPIRE", "ttl:list", "100000"]);
    c.ok(&["HSET", "ttl:hash", "a", "1"]);
    c.ok(&["PEXPIREAT", "ttl:hash", "3000000000000"]);

    // Streams with groups, PEL, consumers, deletions.
    for i in 1..=60 {
        let id = format!("1700000000000-{i}");
        if i % 10 == 0 {
            c.ok(&[
                "XADD",
                "stream:main",
                &id,
                "other",
                &i.to_string(),
                "extra",
                "field",
            ]);
        } else {
            c.ok(&[
                "XADD",
                "stream:main",
                &id,
                "name",
                &format!("n{i}"),
                "count",
                &i.to_string(),
            ]);
        }
    }
    c.ok(&["XGROUP", "CREATE", "stream:main", "g1", "0"]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "10",
        "STREAMS",
        "stream:main",
        ">",
    ]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "5",
        "STREAMS",
        "stream:main",
        ">",
    ]);
    c.ok(&[
        "XACK",
        "stream:main",
        "g1",
        "1700000000000-2",
        "1700000000000-3",
    ]);
    c.ok(&["XGROUP", "CREATECONSUMER", "stream:main", "g1", "carol"]);
    c.ok(&["XGROUP", "CREATE", "stream:main", "g2", "$"]);
    c.ok(&["XGROUP", "CREATE", "stream:main", "g3", "1700000000000-30"]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g3",
        "dave",
        "COUNT",
        "3",
        "STREAMS",
        "stream:main",
        ">",
    ]);
    // Delete entries, one of them pending in g1 (alice holds 1..10).
    c.ok(&[
        "XDEL",
        "stream:main",
        "1700000000000-5",
        "1700000000000-40",
        "1700000000000-41",
    ]);
    c.ok(&["XADD", "stream:empty", "1-1", "a", "b"]);
    c.ok(&["XDEL", "stream:empty", "1-1"]);
    c.ok(&["XGROUP", "CREATE", "stream:mk", "grp", "$", "MKSTREAM"]);
    for i in 0..(200 + 2000 * scale) {
        c.ok(&[
            "XADD",
            "stream:big",
            "*",
            "k",
            &i.to_string(),
            "payload",
            &"s".repeat(i % 50),
        ]);
    }
    c.ok(&["XTRIM", "stream:big", "MAXLEN", "150"]);

    // Other databases.
    c.ok(&["SELECT", "1"]);
    c.ok(&["SET", "db1:key", "in db 1"]);
    c.ok(&["SADD", "db1:set", "x", "y"]);
    c.ok(&["SELECT", "5"]);
    c.ok(&["SET", "db5:key", "in db 5"]);
    c.ok(&["SET", "str:plain", "same name, other db"]);
    c.ok(&["PEXPIREAT", "str:plain", "4102444800999"]);
    c.ok(&["SELECT", "0"]);

    if kind.has_functions() {
        c.ok(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=dcslib\nredis.register_function('dcs_echo', function(keys, args) return args[1] end)",
        ]);
    }
    if kind.has_hash_field_ttl() {
        c.ok(&["HSET", "hfe:hash", "keep", "1", "ttl1", "2", "ttl2", "3"]);
        c.ok(&[
            "HPEXPIREAT",
            "hfe:hash",
            "4102444800000",
            "FIELDS",
            "1",
            "ttl1",
        ]);
        c.ok(&[
            "HPEXPIREAT",
            "hfe:hash",
            "4102444801234",
            "FIELDS",
            "1",
            "ttl2",
        ]);
        c.ok(&["HSET", "hfe:small", "a", "1"]);
        c.ok(&[
            "HPEXPIREAT",
            "hfe:small",
            "4102444800000",
            "FIELDS",
            "1",
            "a",
        ]);
    }
}

/// A few keys of every encoding the server writes: small enough that a test
/// can parse every prefix of the resulting RDB.
pub fn fill_mini(c: &mut Client, kind: Kind) {
    c.ok(&["FLUSHALL"]);
    c.ok(&["CONFIG", "SET", "rdbcompression", "yes"]);
    c.ok(&["CONFIG", "SET", "list-compress-depth", "1"]);
    if kind == Kind::Redis62 {
        c.ok(&["CONFIG", "SET", "list-max-ziplist-size", "4"]);
    } else {
        c.ok(&["CONFIG", "SET", "list-max-listpack-size", "4"]);
        c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);
    }
    c.ok(&["SET", "s", "v"]);
    c.ok(&["SET", "i", "-70000"]);
    c.ok(&["SET", "z", &"lzf".repeat(30)]);
    c.ok(&["PEXPIRE", "s", "100000000"]);
    c.ok(&[
        "RPUSH",
        "l",
        "1",
        "-2",
        "300",
        "70000",
        "a",
        "bb",
        "2147483648",
        "c",
        "d",
        "e",
        "f",
        "g",
    ]);
    c.ok(&["RPUSH", "lp", "x", &"p".repeat(150), "y"]);
    c.ok(&["SADD", "si", "1", "2", "-3"]);
    c.ok(&["SADD", "ss", "a", "b"]);
    c.ok(&["ZADD", "zs", "1.5", "a", "-inf", "b", "3", "c"]);
    c.ok(&["ZADD", "zb", "1", &"m".repeat(80)]);
    c.ok(&["HSET", "h", "f", "v", "n", "12"]);
    c.ok(&["HSET", "hb", "f", &"v".repeat(80)]);
    c.ok(&["XADD", "x", "1-1", "a", "1"]);
    c.ok(&["XADD", "x", "1-2", "a", "2", "b", "3"]);
    c.ok(&["XADD", "x", "2-1", "a", "4"]);
    c.ok(&["XGROUP", "CREATE", "x", "g", "0"]);
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c1",
        "COUNT",
        "2",
        "STREAMS",
        "x",
        ">",
    ]);
    c.ok(&["XGROUP", "CREATECONSUMER", "x", "g", "c2"]);
    c.ok(&["XDEL", "x", "1-1"]);
    c.ok(&["SELECT", "3"]);
    c.ok(&["SET", "d3", "x"]);
    c.ok(&["SELECT", "0"]);
    if kind.has_functions() {
        c.ok(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=m\nredis.register_function('f', function() return 1 end)",
        ]);
    }
    if kind.has_hash_field_ttl() {
        c.ok(&["HSET", "hf", "a", "1", "b", "2"]);
        c.ok(&["HPEXPIREAT", "hf", "4102444800000", "FIELDS", "1", "a"]);
    }
}
