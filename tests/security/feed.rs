//! The replication feed serves one restore, to one target, once; TLS
//! targets never get their data in clear text.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{RedisServer, TestApp, TestCerts};

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// One attempt of a thief: a replica's handshake with the target's own
/// announced port, with or without a guessed AUTH; returns what it got.
async fn steal(feed: std::net::SocketAddr, target_port: u16, guess: Option<&str>) -> Vec<u8> {
    let Ok(mut c) = TcpStream::connect(feed).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(g) = guess {
        out.extend(command(&["AUTH", g]));
    }
    out.extend(command(&["PING"]));
    out.extend(command(&[
        "REPLCONF",
        "listening-port",
        &target_port.to_string(),
    ]));
    out.extend(command(&["REPLCONF", "capa", "eof", "capa", "psync2"]));
    out.extend(command(&["PSYNC", "?", "-1"]));
    let _ = c.write_all(&out).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// During a restore by feed, a thief on the same machine hammers the
/// replication port with a replica's handshake (announcing the target's
/// own port, with and without guessed passwords). It gets no snapshot
/// byte; the restore still succeeds by the feed, and the target's
/// masterauth is put back.
#[tokio::test]
async fn a_thief_on_the_replication_port_gets_nothing_and_the_restore_succeeds() {
    let app = TestApp::spawn().await;
    let feed = app.state.jobs.feed.as_ref().expect("feed").local_addr();
    assert!(
        feed.ip().is_loopback(),
        "the feed binds loopback by default"
    );
    let target = RedisServer::start(&[]);
    target.cli(&["DEBUG", "POPULATE", "300000", "key", "100"]);
    target.cli(&["SET", "marker", "the-crown-jewels"]);
    let digest = target.digest();
    let id = app.adopt("feed-thief", target.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    target.cli(&["FLUSHALL"]);
    target.cli(&["SET", "other", "data"]);
    target.cli(&["CONFIG", "SET", "masterauth", "the-targets-own"]);

    let done = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicUsize::new(0));
    let thief = {
        let (done, tries) = (Arc::clone(&done), Arc::clone(&tries));
        let port = target.port;
        tokio::spawn(async move {
            let mut loot = Vec::new();
            let guesses = [None, Some("the-targets-own"), Some(""), Some("default")];
            while !done.load(Ordering::SeqCst) {
                for g in guesses {
                    loot.extend(steal(feed, port, g).await);
                    tries.fetch_add(1, Ordering::SeqCst);
                }
            }
            loot
        })
    };
    // Meanwhile, what the catalog holds of the restore's crash-recovery
    // state, read straight from the database.
    let watcher = {
        let done = Arc::clone(&done);
        let url = app.database_url.clone();
        tokio::spawn(async move { watch_details(&url, &done).await })
    };
    let restore = app.start_restore(&id, &backup).await;
    let rec = app.wait_restore(&id, &restore).await;
    done.store(true, Ordering::SeqCst);
    let loot = thief.await.expect("thief");
    let details = watcher.await.expect("watcher");
    assert!(
        details.iter().any(|d| d.starts_with("enc1:")),
        "the crash-recovery state was seen sealed: {details:?}"
    );
    assert!(
        details.iter().all(|d| !d.contains("the-targets-own")),
        "the target's masterauth lies in the catalog in clear text"
    );

    assert_eq!(rec["status"], "succeed", "{rec}");
    let path = app.restore_path(&restore).await;
    assert!(path.contains("feed"), "restored by {path}");
    assert_eq!(target.digest(), digest);
    assert!(tries.load(Ordering::SeqCst) >= 4, "the thief tried");
    let loot = String::from_utf8_lossy(&loot);
    assert!(!loot.contains("FULLRESYNC"), "the thief got: {loot:.200}");
    assert!(!loot.contains("REDIS00"), "the thief got RDB bytes");
    assert!(!loot.contains("crown-jewels"));
    assert_eq!(
        target.cli(&["CONFIG", "GET", "masterauth"]).lines().nth(1),
        Some("the-targets-own"),
        "the target's masterauth is put back"
    );
    assert!(target.cli(&["INFO", "replication"]).contains("role:master"));
}

/// Every non-null `restores.detail` value seen until `done`.
async fn watch_details(url: &str, done: &AtomicBool) -> Vec<String> {
    let sql = "SELECT detail FROM restores WHERE detail IS NOT NULL";
    let mut seen = Vec::new();
    macro_rules! poll {
        ($pool:expr) => {{
            let pool = $pool.expect("catalog");
            while !done.load(Ordering::SeqCst) {
                if let Ok(rows) = sqlx::query_scalar::<_, String>(sql).fetch_all(&pool).await {
                    seen.extend(rows);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            pool.close().await;
        }};
    }
    if url.starts_with("sqlite:") {
        poll!(sqlx::SqlitePool::connect(url).await)
    } else {
        poll!(sqlx::PgPool::connect(url).await)
    }
    seen
}

/// With no restore waiting, the replication listener closes every
/// connection at once, reading nothing (a slow or idle peer cannot hold
/// it).
#[tokio::test]
async fn the_replication_listener_closes_connections_no_restore_expects() {
    let app = TestApp::spawn().await;
    let feed = app.state.jobs.feed.as_ref().expect("feed").local_addr();
    let mut c = TcpStream::connect(feed).await.expect("connect");
    let _ = c.write_all(&command(&["PING"])).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "got {:?}", String::from_utf8_lossy(&buf[..n]));
}

/// A TCP relay that records every byte going through it, both ways.
async fn recording_proxy(upstream: u16) -> (u16, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    l1.lock().expect("log").extend_from_slice(&buf[..n]);
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    l2.lock().expect("log").extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, seen)
}

fn tls_args(certs: &TestCerts, tls_port: &str) -> Vec<String> {
    let d = certs.dir.path();
    let f = |n: &str| d.join(n).display().to_string();
    [
        "--tls-port",
        tls_port,
        "--tls-cert-file",
        &f("server.pem"),
        "--tls-key-file",
        &f("server.key"),
        "--tls-ca-cert-file",
        &f("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A target adopted over TLS is restored without its data crossing the
/// wire in clear text: everything between the service and the target goes
/// through a recording relay and never shows the values, and the restore
/// takes the TLS connection (slicing), not the plain-TCP feed.
#[tokio::test]
async fn a_tls_target_is_restored_without_clear_text_on_the_wire() {
    let certs = TestCerts::new();
    let ca = certs.ca();
    let app = TestApp::spawn_with(|c| c.redis_ca_file = Some(ca)).await;
    let tls_port = crate::common::free_port();
    let args = tls_args(&certs, &tls_port.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The plain port is the test's own window on the server.
    let target = RedisServer::start(&args);
    for i in 0..2000 {
        target.cli(&["SET", &format!("k{i}"), &format!("secret-value-{i}")]);
    }
    let digest = target.digest();
    let (relay, seen) = recording_proxy(tls_port).await;
    let id = app
        .adopt("tls-target", relay, json!({"enable_ssl": true}))
        .await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    target.cli(&["FLUSHALL"]);

    let restore = app.start_restore(&id, &backup).await;
    let rec = app.wait_restore(&id, &restore).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(target.digest(), digest);
    let path = app.restore_path(&restore).await;
    assert!(path.contains("slicing"), "restored by {path}");
    let seen = seen.lock().expect("log").clone();
    assert!(seen.len() > 20_000, "the relay saw the traffic");
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("secret-value-"), "clear text on the wire");
    assert!(
        !text.contains("REDIS00"),
        "an RDB in clear text on the wire"
    );
}

/// A target that replicates over TLS (`tls-replication yes`) would open
/// TLS to the plain-TCP feed: the restore takes another path and succeeds.
#[tokio::test]
async fn a_target_replicating_over_tls_is_restored_another_way() {
    let certs = TestCerts::new();
    let app = TestApp::spawn().await;
    let tls_port = crate::common::free_port().to_string();
    let mut args = tls_args(&certs, &tls_port);
    args.extend(["--tls-replication".to_owned(), "yes".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let target = RedisServer::start(&args);
    target.cli(&["DEBUG", "POPULATE", "5000"]);
    let digest = target.digest();
    let id = app.adopt("tls-replication", target.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    target.cli(&["FLUSHALL"]);
    let restore = app.start_restore(&id, &backup).await;
    let rec = app.wait_restore(&id, &restore).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(target.digest(), digest);
    let path = app.restore_path(&restore).await;
    assert!(path.contains("slicing"), "restored by {path}");
}
