//! Secrets stay secret and adopt is not a scanner: passwords are checked
//! before they go anywhere, never follow an instance to a new address
//! without being given again, are encrypted at rest, and the service only
//! connects to targets its policy allows, answering in fixed phrases that
//! never echo what a peer sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, free_port, RedisServer, ServiceProcess, TestApp, TestDb};

/// A hostile listener: counts connections, records every byte sent to it
/// and answers each read with `reply` (closing after the first if
/// `close_after_reply`).
struct Listener {
    port: u16,
    conns: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Listener {
    async fn start(reply: Vec<u8>, close_after_reply: bool) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (Arc::clone(&conns), Arc::clone(&seen));
        let reply = Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (s, reply) = (Arc::clone(&s), Arc::clone(&reply));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match tokio::time::timeout(
                            Duration::from_secs(10),
                            sock.read(&mut buf),
                        )
                        .await
                        {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                        s.lock().unwrap().extend_from_slice(&buf[..n]);
                        if !reply.is_empty() && sock.write_all(&reply).await.is_err() {
                            return;
                        }
                        if close_after_reply {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, conns, seen }
    }

    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

fn adopt_body(name: &str, host: &str, port: u16, extra: Value) -> Value {
    let mut body = json!({
        "name": name, "engine": "Redis", "capacity": 1, "spec_code": "redis.single.xu1.tiny.128",
        "az_codes": ["az1"], "vpc_id": "vpc", "subnet_id": "subnet",
        "private_ip": host, "port": port,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

async fn try_adopt(app: &TestApp, name: &str, host: &str, port: u16, extra: Value) -> (u16, Value) {
    app.call(
        Method::POST,
        &app.v2("/instances"),
        Some(adopt_body(name, host, port, extra)),
    )
    .await
}

async fn instance_count(app: &TestApp) -> u64 {
    let (s, b) = app.call(Method::GET, &app.v2("/instances"), None).await;
    assert_eq!(s, 200, "{b}");
    b["instance_num"].as_u64().unwrap()
}

async fn show(app: &TestApp, id: &str) -> Value {
    let (s, b) = app
        .call(Method::GET, &app.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

/// The refusal every disallowed target gets.
fn assert_not_allowed(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "DCS.4800", "{body}");
    assert_eq!(
        body["error_msg"], "Invalid private_ip in the request.",
        "{body}"
    );
    assert_eq!(body["error_ext_msg"], "not an allowed target", "{body}");
}

/// The stored password column of an instance, read past the service.
async fn stored_password(database_url: &str, id: &str) -> Option<String> {
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let v = sqlx::query_scalar("SELECT password FROM instances WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let v = sqlx::query_scalar("SELECT password FROM instances WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    }
}

async fn set_stored_password(database_url: &str, id: &str, value: &str) {
    let sql = "UPDATE instances SET password = $1 WHERE id = $2";
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

// ---- passwords checked before they go anywhere ------------------------------

#[tokio::test]
async fn passwords_and_users_with_control_characters_are_refused_and_never_sent() {
    let app = TestApp::spawn().await;
    let listener = Listener::start(b"+OK\r\n".to_vec(), false).await;
    for (extra, code) in [
        (json!({"password": "pw\r\nFLUSHALL"}), "DCS.4845"),
        (json!({"password": "pw\nCONFIG SET dir /tmp"}), "DCS.4845"),
        (json!({"password": "nul\u{0}byte"}), "DCS.4845"),
        (json!({"password": "del\u{7f}"}), "DCS.4845"),
        (json!({"password": "x".repeat(513)}), "DCS.4845"),
        (
            json!({"access_user": "u\r\nx", "password": "pw"}),
            "DCS.4844",
        ),
        (
            json!({"access_user": "y".repeat(513), "password": "pw"}),
            "DCS.4844",
        ),
    ] {
        let (s, b) = try_adopt(&app, "crlf-1", "127.0.0.1", listener.port, extra.clone()).await;
        assert_eq!(
            (s, b["error_code"].as_str()),
            (400, Some(code)),
            "{extra}: {b}"
        );
    }
    assert_eq!(
        instance_count(&app).await,
        0,
        "a refused adoption stored something"
    );

    // On modify as on create: refused, nothing changed, nothing sent.
    let redis = RedisServer::start(&[]);
    let id = app.adopt("crlf-2", redis.port, json!({})).await;
    let before = show(&app, &id).await;
    for body in [
        json!({"password": "a\r\nb", "port": listener.port}),
        json!({"password": "a\r\nb"}),
        json!({"access_user": "u\nv", "port": listener.port}),
    ] {
        let (s, b) = app
            .call(
                Method::PUT,
                &app.v2(&format!("/instances/{id}")),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(
            matches!(b["error_code"].as_str(), Some("DCS.4845" | "DCS.4844")),
            "{b}"
        );
    }
    let mut after = show(&app, &id).await;
    after["status"] = before["status"].clone();
    assert_eq!(after, before);
    assert_eq!(listener.connections(), 0, "the listener was contacted");
    // A legal password of 512 bytes is taken (and refused by Redis as wrong).
    let (s, b) = try_adopt(
        &app,
        "crlf-3",
        "127.0.0.1",
        redis.port,
        json!({"password": "p".repeat(512)}),
    )
    .await;
    assert_ne!(b["error_code"], "DCS.4845", "{s} {b}");
}

#[tokio::test]
async fn moving_an_instance_elsewhere_needs_its_password_again() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--requirepass", "the-stored-pw"]);
    let id = app
        .adopt("move-1", redis.port, json!({"password": "the-stored-pw"}))
        .await;
    let before = show(&app, &id).await;
    // It answers like a Redis refusing the password, so nothing is adopted.
    let thief = Listener::start(b"-ERR no\r\n".to_vec(), false).await;
    let path = app.v2(&format!("/instances/{id}"));

    for body in [
        json!({"port": thief.port}),
        json!({"port": thief.port, "name": "move-2"}),
        json!({"private_ip": "localhost"}),
        json!({"access_user": "default"}),
        json!({"enable_ssl": true}),
    ] {
        let (s, b) = app.call(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(
            (s, b["error_code"].as_str(), b["error_msg"].as_str()),
            (
                400,
                Some("DCS.4845"),
                Some("The password parameter is missing or its value is invalid.")
            ),
            "{body}: {b}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        thief.connections(),
        0,
        "the service contacted the new address"
    );
    assert!(!thief.seen().contains("the-stored-pw"));
    let mut after = show(&app, &id).await;
    after["status"] = before["status"].clone();
    assert_eq!(after, before, "a refused modify changed the instance");

    // Changing what does not move the instance needs no password.
    let (s, b) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"description": "still here"})),
        )
        .await;
    assert_eq!(s, 204, "{b}");

    // With a password given, the service goes there, with that password
    // and not the stored one; a listener that is no Redis is refused.
    let (s, b) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"port": thief.port, "password": "given-now"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(thief.connections(), 1);
    assert!(thief.seen().contains("AUTH"), "{}", thief.seen());
    assert!(thief.seen().contains("given-now"));
    assert!(!thief.seen().contains("the-stored-pw"));
    assert_eq!(show(&app, &id).await["port"], redis.port);

    // And a real move with the password is taken.
    let other = RedisServer::start(&["--requirepass", "the-stored-pw"]);
    let (s, b) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"port": other.port, "password": "the-stored-pw"})),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(show(&app, &id).await["port"], other.port);
}

// ---- which targets may be reached -------------------------------------------

#[tokio::test]
async fn metadata_and_link_local_addresses_are_refused_without_a_connection() {
    if common::engine() == "postgres" {
        return;
    }
    let app = TestApp::spawn().await;
    for host in [
        "169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "fe80::1",
        "0.0.0.0",
        "169.254.1.1",
    ] {
        let start = Instant::now();
        let (s, b) = try_adopt(&app, "meta-1", host, 80, json!({})).await;
        assert_not_allowed(s, &b);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{host}: took {:?}, a connection was tried",
            start.elapsed()
        );
    }
    assert_eq!(instance_count(&app).await, 0);
}

#[tokio::test]
async fn a_deny_list_refuses_loopback_by_address_and_by_name() {
    if common::engine() == "postgres" {
        return;
    }
    let app = TestApp::spawn_with(|c| {
        c.deny_targets = dcs_backup::redis::Cidr::parse_list("127.0.0.0/8, ::1").unwrap();
    })
    .await;
    let redis = RedisServer::start(&[]);
    let (s, b) = try_adopt(&app, "deny-1", "127.0.0.1", redis.port, json!({})).await;
    assert_not_allowed(s, &b);
    // A host name is resolved and every address it has is checked.
    let (s, b) = try_adopt(&app, "deny-2", "localhost", redis.port, json!({})).await;
    assert_not_allowed(s, &b);
    assert_eq!(instance_count(&app).await, 0);
}

#[tokio::test]
async fn an_allow_list_is_the_only_thing_allowed() {
    if common::engine() == "postgres" {
        return;
    }
    let redis = RedisServer::start(&[]);
    let app = TestApp::spawn_with(|c| {
        c.allow_targets = Some(dcs_backup::redis::Cidr::parse_list("10.0.0.0/8").unwrap());
    })
    .await;
    let (s, b) = try_adopt(&app, "allow-1", "127.0.0.1", redis.port, json!({})).await;
    assert_not_allowed(s, &b);

    let app = TestApp::spawn_with(|c| {
        c.allow_targets = Some(dcs_backup::redis::Cidr::parse_list("127.0.0.1").unwrap());
    })
    .await;
    app.adopt("allow-2", redis.port, json!({})).await;
}

#[tokio::test]
async fn the_service_own_ports_are_not_targets() {
    if common::engine() == "postgres" {
        return;
    }
    let repl = free_port();
    let app = TestApp::spawn_with(|c| c.replication_port = Some(repl)).await;
    for (host, port) in [
        ("127.0.0.1", repl),
        ("127.0.0.1", app.addr.port()),
        ("localhost", app.addr.port()),
        ("127.0.0.2", repl),
    ] {
        let (s, b) = try_adopt(&app, "self-1", host, port, json!({})).await;
        assert_not_allowed(s, &b);
    }
}

/// A fake Redis that takes any password and says it is a replica of
/// `master`; it records what it receives.
async fn fake_replica_of(master: &str) -> Listener {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (Arc::clone(&conns), Arc::clone(&seen));
    let (host, mport) = master.rsplit_once(':').unwrap();
    let repl =
        format!("# Replication\r\nrole:slave\r\nmaster_host:{host}\r\nmaster_port:{mport}\r\n");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (s, repl) = (Arc::clone(&s), repl.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await
                {
                    if n == 0 {
                        return;
                    }
                    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                    let body = if got.contains("replication") {
                        repl.clone()
                    } else if got.contains("server") {
                        "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n".to_owned()
                    } else {
                        let _ = sock.write_all(b"+OK\r\n").await;
                        continue;
                    };
                    let reply = format!("${}\r\n{body}\r\n", body.len());
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Listener { port, conns, seen }
}

#[tokio::test]
async fn a_master_a_peer_reports_meets_the_same_check_before_any_password() {
    if common::engine() == "postgres" {
        return;
    }
    let app = TestApp::spawn().await;
    // A "replica" whose master is the cloud metadata service, and one whose
    // master is the service's own API.
    let own = format!("127.0.0.1:{}", app.addr.port());
    for master in ["169.254.169.254:80", own.as_str()] {
        let fake = fake_replica_of(master).await;
        let start = Instant::now();
        let (s, b) = try_adopt(
            &app,
            "peer-1",
            "127.0.0.1",
            fake.port,
            json!({"password": "peer-pw"}),
        )
        .await;
        assert_not_allowed(s, &b);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{master}: {:?}",
            start.elapsed()
        );
        // The fake itself was asked (with the password the user gave it).
        assert!(fake.seen().contains("replication"), "{}", fake.seen());
    }
    assert_eq!(instance_count(&app).await, 0);
}

// ---- errors never echo a peer -----------------------------------------------

#[tokio::test]
async fn connection_errors_are_short_fixed_and_echo_nothing() {
    if common::engine() == "postgres" {
        return;
    }
    let app = TestApp::spawn().await;
    // A reply of a million elements, an HTTP server, a long error full of
    // control characters, and a closed port.
    let mut huge = b"*1000000\r\n".to_vec();
    for _ in 0..1_000_000 {
        huge.extend_from_slice(b"$3\r\nABC\r\n");
    }
    let big = Listener::start(huge, false).await;
    let http = Listener::start(
        b"HTTP/1.1 400 Bad Request\r\nServer: nginx-SECRETBANNER\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
        true,
    )
    .await;
    let mut err = b"-ERR ".to_vec();
    err.extend(std::iter::repeat_n(b"Z\x1b[31m".as_slice(), 20_000).flatten());
    err.extend_from_slice(b"\r\n");
    let noisy = Listener::start(err, false).await;
    let closed = free_port();

    let mut answers = Vec::new();
    for (what, port) in [
        ("huge", big.port),
        ("http", http.port),
        ("noisy", noisy.port),
        ("closed", closed),
    ] {
        let resp = app
            .send_signed(
                &app.cred,
                Method::POST,
                &app.v2("/instances"),
                serde_json::to_vec(&adopt_body("echo-1", "127.0.0.1", port, json!({}))).unwrap(),
                |_| {},
            )
            .await;
        assert_eq!(resp.status().as_u16(), 400, "{what}");
        let text = resp.text().await.unwrap();
        assert!(
            text.len() < 300,
            "{what}: {} bytes: {}",
            text.len(),
            &text[..300]
        );
        for peer in [
            "ABC",
            "HTTP",
            "nginx",
            "SECRETBANNER",
            "ZZ",
            "\\u001b",
            "Bad Request",
        ] {
            assert!(!text.contains(peer), "{what} echoed {peer:?}: {text}");
        }
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(b["error_code"], "DCS.4800", "{what}: {b}");
        answers.push(b);
    }
    // A closed port and an HTTP server are told apart by nothing.
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(
        answers[0]["error_ext_msg"],
        "the server could not be reached or did not answer as Redis"
    );
}

#[tokio::test]
async fn a_wrong_password_keeps_its_code_and_a_fixed_phrase() {
    if common::engine() == "postgres" {
        return;
    }
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--requirepass", "right"]);
    for extra in [json!({"password": "wrong"}), json!({})] {
        let (s, b) = try_adopt(&app, "wrongpw-1", "127.0.0.1", redis.port, extra).await;
        assert_eq!(
            (s, b["error_code"].as_str()),
            (400, Some("DCS.4080")),
            "{b}"
        );
        assert_eq!(b["error_ext_msg"], "authentication failed", "{b}");
    }
}

// ---- passwords at rest --------------------------------------------------------

#[tokio::test]
async fn passwords_are_encrypted_at_rest_and_old_plaintext_rows_are_sealed_at_start() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--requirepass", "pw-at-rest-1234"]);
    let id = app
        .adopt("rest-1", redis.port, json!({"password": "pw-at-rest-1234"}))
        .await;
    let stored = stored_password(&app.database_url, &id).await.unwrap();
    assert!(stored.starts_with("enc1:"), "{stored}");
    assert!(!stored.contains("pw-at-rest-1234"));
    // Nothing else under the data dir holds it either (the WAL included).
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(15).any(|w| w == b"pw-at-rest-1234"),
                "{} holds the password",
                p.display()
            );
        }
    }

    // A row written by a version before encryption...
    set_stored_password(&app.database_url, &id, "pw-at-rest-1234").await;
    // ...is sealed when a service starts on the catalog, and still works.
    let next = TestApp::spawn_replica_of(&app, |_| {}).await;
    let sealed = stored_password(&app.database_url, &id).await.unwrap();
    assert!(sealed.starts_with("enc1:"), "{sealed}");
    let backup = next.start_backup(&id, "rdb").await;
    let rec = next.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    // Starting again changes nothing: sealing is idempotent.
    let _again = TestApp::spawn_replica_of(&app, |_| {}).await;
    assert_eq!(
        stored_password(&app.database_url, &id).await.unwrap(),
        sealed
    );
}

#[tokio::test]
async fn a_password_sealed_with_another_key_makes_only_that_instance_unusable() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--requirepass", "other-key-pw"]);
    let id = app
        .adopt("key-1", redis.port, json!({"password": "other-key-pw"}))
        .await;
    let stranger = TestApp::spawn_replica_of(&app, |c| {
        c.secret_key = Some(dcs_backup::model::Secret::new("42".repeat(32)));
    })
    .await;
    let (s, b) = stranger
        .call(Method::GET, &stranger.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!(s, 500, "{b}");
    let text = b.to_string();
    assert!(
        !text.contains("other-key-pw") && !text.contains("enc1"),
        "{text}"
    );
    // The service that holds the key still uses it.
    assert_eq!(show(&app, &id).await["status"], "RUNNING");
}

// ---- the real binary: rotation and file modes --------------------------------

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn wait_backup_process(svc: &ServiceProcess, id: &str, backup: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = svc
            .call(
                Method::GET,
                &svc.v2(&format!("/instances/{id}/backups?limit=100")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let rec = b["backup_record_response"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["backup_id"] == backup))
            .cloned()
            .unwrap_or_default();
        if matches!(rec["status"].as_str(), Some("succeed" | "failed")) {
            return rec;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{rec}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn adopt_process(svc: &ServiceProcess, name: &str, port: u16, password: &str) -> String {
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(adopt_body(
                name,
                "127.0.0.1",
                port,
                json!({"password": password}),
            )),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn backup_process(svc: &ServiceProcess, id: &str) -> Value {
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/backups")),
            Some(json!({"remark": "t", "backup_format": "rdb"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let backup = b["backup_id"].as_str().unwrap().to_owned();
    wait_backup_process(svc, id, &backup).await
}

fn binary() -> std::path::PathBuf {
    std::env::var_os("DCS_BACKUP_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_dcs-backup").into())
}

#[tokio::test]
async fn secrets_rotate_reencrypts_every_password_and_drops_the_old_key() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let mut svc = ServiceProcess::start(&dir, db.url.as_deref());
    let redis = RedisServer::start(&["--requirepass", "rotate-me-pw"]);
    let id = adopt_process(&svc, "rot-1", redis.port, "rotate-me-pw").await;
    let url = db
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("catalog.db").display()));
    let before = stored_password(&url, &id).await.unwrap();
    let key_file = dir.join("secret.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let old_id = old_key.split_whitespace().next().unwrap().to_owned();
    assert!(before.starts_with(&format!("enc1:{old_id}:")), "{before}");

    svc.kill();
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["secrets", "rotate", "--data-dir"]).arg(&dir);
    if let Some(u) = &db.url {
        cmd.args(["--database-url", u]);
    }
    let out = cmd.env_remove("DCS_BACKUP_SECRET_KEY").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passwords_reencrypted"], 1, "{report}");
    let new_id = report["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);

    let after = stored_password(&url, &id).await.unwrap();
    assert_ne!(after, before);
    assert!(after.starts_with(&format!("enc1:{new_id}:")), "{after}");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(new_key.lines().count(), 1, "{new_key}");
    assert!(!new_key.contains(&old_id) && !new_key.contains(old_key.trim()));
    assert_eq!(mode(&key_file), 0o600);

    svc.restart();
    let rec = backup_process(&svc, &id).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
}

#[tokio::test]
async fn secrets_rotate_under_an_environment_key_prints_the_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "5a".repeat(32);
    let app = TestApp::spawn_with(|c| {
        c.secret_key = Some(dcs_backup::model::Secret::new(key.clone()));
    })
    .await;
    let redis = RedisServer::start(&["--requirepass", "env-key-pw"]);
    let id = app
        .adopt("envrot-1", redis.port, json!({"password": "env-key-pw"}))
        .await;
    let before = stored_password(&app.database_url, &id).await.unwrap();
    let out = std::process::Command::new(binary())
        .args(["secrets", "rotate", "--data-dir"])
        .arg(tmp.path())
        .args(["--database-url", &app.database_url])
        .env("DCS_BACKUP_SECRET_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_key = report["secret_key"].as_str().unwrap().to_owned();
    assert_eq!(new_key.len(), 64);
    assert_ne!(new_key, key);
    assert!(
        !tmp.path().join("secret.key").exists(),
        "a key file was written"
    );
    let after = stored_password(&app.database_url, &id).await.unwrap();
    assert_ne!(after, before);
    // A service given the printed key reads the password.
    let next = TestApp::spawn_replica_of(&app, |c| {
        c.secret_key = Some(dcs_backup::model::Secret::new(new_key.clone()));
    })
    .await;
    let backup = next.start_backup(&id, "rdb").await;
    assert_eq!(next.wait_backup(&id, &backup).await["status"], "succeed");
}

#[tokio::test]
async fn files_are_owner_only_after_the_first_start() {
    let db = TestDb::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A data dir an older version left world-readable is tightened too.
    std::fs::create_dir(&dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let svc = ServiceProcess::start(&dir, db.url.as_deref());
    assert_eq!(mode(&dir), 0o700);
    let mut files = vec!["credentials.json", "secret.key", "node-id"];
    if db.url.is_none() {
        files.extend(["catalog.db", "catalog.db-wal"]);
    }
    for f in files {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }

    let redis = RedisServer::start(&["--requirepass", "modes-pw"]);
    redis.cli(&["-a", "modes-pw", "SET", "k", "v"]);
    let id = adopt_process(&svc, "modes-1", redis.port, "modes-pw").await;
    let rec = backup_process(&svc, &id).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let mut found = 0;
    let mut stack = vec![dir.join("backups")];
    while let Some(d) = stack.pop() {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                found += 1;
            }
        }
    }
    assert!(found >= 2, "no backup files found");
}
