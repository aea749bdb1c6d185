//! The HTTP API as an attacker on the network meets it: replayed signed
//! requests, reordered query strings, unsigned bodies, slow and idle
//! connections, too many connections, TLS, download links that outlive
//! their instance or key, and what an unknown access key costs.

use std::time::{Duration, Instant};

use axum::http::Method;
use dcs_backup::api::auth::RequestSigner;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Cred, RedisServer, TestApp, TestCerts};

/// Headers of one signed request, made once so it can be sent again
/// byte for byte. The `host` header is signed and sent as given.
fn sign_once(
    cred: &Cred,
    method: &Method,
    path: &str,
    body: &[u8],
    host: &str,
) -> Vec<(String, String)> {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    RequestSigner {
        ak: &cred.ak,
        sk: &cred.sk,
    }
    .headers(method, p, q, host, body, time::OffsetDateTime::now_utc())
}

/// Sends prepared signed headers (host included) to `base` (`http://…`).
async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

async fn backup_count(app: &TestApp, id: &str) -> u64 {
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{id}/backups")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["total_num"].as_u64().expect("total_num")
}

#[tokio::test]
async fn a_replayed_signed_post_is_refused_and_makes_no_second_backup() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("replay-1", redis.port, json!({})).await;
    let path = app.v2(&format!("/instances/{id}/backups"));
    let body = br#"{"remark":"once"}"#;
    let host = app.addr.to_string();
    let base = format!("http://{host}");
    let headers = sign_once(&app.cred, &Method::POST, &path, body, &host);

    let (s, b) = send(&app.http, &base, Method::POST, &path, &headers, body).await;
    assert_eq!(s, 200, "{b}");
    let first = b["backup_id"].as_str().expect("backup_id").to_owned();
    assert_eq!(app.wait_backup(&id, &first).await["status"], "succeed");

    // The same bytes again, once the instance is free: refused as used.
    let (s, b) = send(&app.http, &base, Method::POST, &path, &headers, body).await;
    assert_eq!(
        (s, b["error_code"].as_str(), b["error_msg"].as_str()),
        (401, Some("DCS.1001"), Some("Request already used.")),
        "{b}"
    );
    assert_eq!(backup_count(&app, &id).await, 1, "no second backup");

    // A signed read changes nothing and may be sent again.
    let list = app.v2(&format!("/instances/{id}/backups"));
    let headers = sign_once(&app.cred, &Method::GET, &list, b"", &host);
    for _ in 0..2 {
        let (s, b) = send(&app.http, &base, Method::GET, &list, &headers, b"").await;
        assert_eq!((s, b["total_num"].as_u64()), (200, Some(1)), "{b}");
    }
    // A new request (a new signature) for the same thing is accepted.
    let second = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &second).await["status"], "succeed");
    assert_eq!(backup_count(&app, &id).await, 2);
}

#[tokio::test]
async fn a_replay_sent_to_another_replica_is_refused() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_replica_of(&a, |_| {}).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = a.adopt("replay-2", redis.port, json!({})).await;
    let path = a.v2(&format!("/instances/{id}/backups"));
    let body = br#"{"remark":"replicas"}"#;
    // Behind one load balancer both replicas see the same Host.
    let host = "dcs.example:443";
    let headers = sign_once(&a.cred, &Method::POST, &path, body, host);

    let (s, r) = send(
        &b.http,
        &format!("http://{}", b.addr),
        Method::POST,
        &path,
        &headers,
        body,
    )
    .await;
    assert_eq!(s, 200, "the signature is good on any replica: {r}");
    let first = r["backup_id"].as_str().expect("backup_id").to_owned();
    assert_eq!(a.wait_backup(&id, &first).await["status"], "succeed");
    let (s, r) = send(
        &a.http,
        &format!("http://{}", a.addr),
        Method::POST,
        &path,
        &headers,
        body,
    )
    .await;
    assert_eq!(
        (s, r["error_code"].as_str()),
        (401, Some("DCS.1001")),
        "{r}"
    );
    assert_eq!(backup_count(&a, &id).await, 1);
}

#[tokio::test]
async fn repeated_query_parameters_are_refused() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let id = app.adopt("repeat-1", redis.port, json!({})).await;
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{id}/backups?limit=1")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for query in [
        "limit=1&limit=5",
        "limit=5&%6Cimit=1",
        "offset=0&limit=2&offset=1",
    ] {
        let (s, b) = app
            .call(
                Method::GET,
                &app.v2(&format!("/instances/{id}/backups?{query}")),
                None,
            )
            .await;
        assert_eq!(
            (s, b["error_code"].as_str()),
            (400, Some("DCS.4800")),
            "{query}: {b}"
        );
        assert!(b.get("backup_record_response").is_none(), "{b}");
    }
    let (s, b) = app
        .call(Method::GET, &app.v2("/instances?limit=1&limit=2"), None)
        .await;
    assert_eq!(
        (s, b["error_msg"].as_str()),
        (400, Some("Invalid limit in the request.")),
        "{b}"
    );
    // v1.0 answers in its own shape.
    let (s, b) = app
        .call(
            Method::GET,
            &app.v1(&format!("/instances/{id}/backups?start=1&start=2")),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("111400800")),
        "{b}"
    );
}

/// Reads whatever the server sends until it closes or `limit` passes;
/// returns the bytes and whether it closed.
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test]
async fn an_unsigned_big_body_is_refused_before_it_is_sent() {
    let app = TestApp::spawn().await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
        app.v2("/instances"),
        app.addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Not a byte of the body: the answer must come anyway.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("DCS.1003"), "{text}");

    // A signed date out of the window is refused the same way.
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nX-Sdk-Date: 20200101T000000Z\r\n\
         Authorization: SDK-HMAC-SHA256 Access={}, SignedHeaders=host;x-sdk-date, Signature=00\r\n\
         Content-Length: 1048576\r\n\r\n",
        app.v2("/instances"),
        app.addr,
        app.cred.ak
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("DCS.1002"), "{text}");
}

#[tokio::test]
async fn slowloris_headers_are_cut_at_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let start = Instant::now();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(closed, "the half-sent request was never dropped");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The server still answers others.
    let resp = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_body_deadline() {
    let app = TestApp::spawn_with(|c| c.http.body_timeout = Duration::from_secs(1)).await;
    let path = app.v2("/instances");
    let body = vec![b' '; 200];
    let host = app.addr.to_string();
    let headers = sign_once(&app.cred, &Method::POST, &path, &body, &host);
    let mut head = format!("POST {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    // One byte every 200 ms: the body would take 40 s.
    let trickle = async {
        for b in &body {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let (bytes, closed) = read_until_closed(&mut conn, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed, "the connection is closed after the 408");
    assert!(start.elapsed() < Duration::from_secs(7));
    let (s, b) = app.call(Method::GET, &app.v2("/instances"), None).await;
    assert_eq!((s, b["instance_num"].as_u64()), (200, Some(0)), "{b}");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_timeout = Duration::from_secs(30);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (bytes, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle kept-alive connection stays open");
    assert!(start.elapsed() < Duration::from_secs(4));
}

/// A kept-alive connection that has been served once.
async fn served_connection(app: &TestApp) -> TcpStream {
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf))
        .await
        .expect("served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    conn
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = TestApp::spawn_with(|c| {
        c.http.max_connections = 2;
        c.http.header_timeout = Duration::from_secs(20);
    })
    .await;
    let first = served_connection(&app).await;
    let _second = served_connection(&app).await;
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn the_api_serves_tls_when_given_a_certificate() {
    let certs = TestCerts::new();
    let d = certs.dir.path().to_owned();
    let app = TestApp::spawn_with(|c| {
        c.http.tls = Some((d.join("server.pem"), d.join("server.key")));
    })
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca()).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let path = app.v2("/instances");
    let host = app.addr.to_string();
    let headers = sign_once(&app.cred, &Method::GET, &path, b"", &host);
    let base = format!("https://{host}");
    let (s, b) = send(&https, &base, Method::GET, &path, &headers, b"").await;
    assert_eq!((s, b["instance_num"].as_u64()), (200, Some(0)), "{b}");
    // Download links default to https.
    let public = app.state.public_url.get().cloned().unwrap_or_default();
    assert_eq!(public, format!("https://{host}"));
    // Plain HTTP to the same port gets no answer.
    let plain = app.http.get(app.url("/health")).send().await;
    assert!(
        plain
            .as_ref()
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "{plain:?}"
    );
}

#[tokio::test]
async fn start_up_fails_clearly_on_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dcs-backup"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .env_remove("DCS_BACKUP_TLS_CERT")
            .env_remove("DCS_BACKUP_TLS_KEY")
            .output()
            .expect("runs")
    };
    let j = junk.to_str().unwrap();
    let out = run(&["--tls-cert", j, "--tls-key", j]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("API TLS") && err.contains("junk.pem"), "{err}");
    let out = run(&["--tls-cert", j]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--tls-key"), "{err}");
}

/// Makes a backup of a fresh instance; returns (instance, backup).
async fn backed_up(app: &TestApp, redis: &RedisServer, name: &str) -> (String, String) {
    let id = app.adopt(name, redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    (id, backup)
}

async fn link(app: &TestApp, id: &str, backup: &str, ttl: u64) -> String {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({ "expiration": ttl })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["links"][0]["link"].as_str().expect("link").to_owned()
}

async fn fetch_status(app: &TestApp, url: &str) -> u16 {
    app.http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn rotating_the_link_key_kills_old_links() {
    let app = TestApp::spawn().await;
    let replica = TestApp::spawn_replica_of(&app, |_| {}).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let (id, backup) = backed_up(&app, &redis, "links-1").await;
    let old = link(&app, &id, &backup, 300).await;
    assert_eq!(fetch_status(&app, &old).await, 200);
    // Rotated by another process sharing the catalog.
    replica.catalog().rotate_link_key().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        fetch_status(&app, &old).await,
        403,
        "an old link still works"
    );
    let new = link(&app, &id, &backup, 301).await;
    assert_eq!(fetch_status(&app, &new).await, 200);
}

#[tokio::test]
async fn a_deleted_instance_kills_its_links_but_its_backups_stay_manageable() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let (id, backup) = backed_up(&app, &redis, "links-2").await;
    let l = link(&app, &id, &backup, 300).await;
    assert_eq!(fetch_status(&app, &l).await, 200);
    let (s, _) = app
        .call(Method::DELETE, &app.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!(s, 204);
    let resp = app.http.get(&l).send().await.unwrap();
    assert_eq!(resp.status(), 403, "a link outlived its instance");
    let b: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(b["error_code"], "DCS.2003", "answered like an expired link");

    // Still listed, v2 and v1.0.
    assert_eq!(app.find_backup(&id, &backup).await["status"], "succeed");
    let (s, b) = app
        .call(
            Method::GET,
            &app.v1(&format!("/instances/{id}/backups")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains(&backup), "{b}");
    // No new backup, restore or link for it.
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups")),
            Some(json!({})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_str()), (404, Some("DCS.3022")));
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({"expiration": 600})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_str()), (404, Some("DCS.3022")));
    // Another project still sees nothing.
    let other = app.credential_for("other-project").await;
    let (s, _) = app
        .call_as(
            &other,
            Method::DELETE,
            &format!("/v2/other-project/instances/{id}/backups/{backup}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // Its own project deletes it.
    let (s, b) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{id}/backups/{backup}")),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(app.find_backup(&id, &backup).await["status"], "deleted");
}

#[tokio::test]
async fn an_unknown_access_key_costs_no_query_while_remembered() {
    let app = TestApp::spawn().await;
    let path = app.v2("/instances");
    let lookups = || app.state.credentials.catalog_lookups();
    let stranger = Cred {
        project_id: app.cred.project_id.clone(),
        ak: "NOSUCHAK0000000000".into(),
        sk: "whatever".into(),
    };
    let before = lookups();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (s, b) = app.call_as(&stranger, Method::GET, &path, None).await;
        unknown.push(t.elapsed());
        assert_eq!((s, b["error_code"].as_str()), (401, Some("DCS.1001")));
    }
    assert_eq!(
        lookups() - before,
        1,
        "one query for five unknown-AK requests"
    );

    // A known AK with a bad signature: the same answer, the same cost.
    let wrong = Cred {
        sk: "not-the-sk".into(),
        ..app.cred.clone()
    };
    let fresh = app.credential_for(&app.cred.project_id).await;
    let wrong_fresh = Cred {
        sk: "not-the-sk".into(),
        ..fresh
    };
    let before = lookups();
    let mut known = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (s, b) = app.call_as(&wrong_fresh, Method::GET, &path, None).await;
        known.push(t.elapsed());
        assert_eq!((s, b["error_code"].as_str()), (401, Some("DCS.1001")));
    }
    assert_eq!(
        lookups() - before,
        1,
        "one query for five known-AK requests"
    );
    let (s, b) = app.call_as(&wrong, Method::GET, &path, None).await;
    assert_eq!((s, b["error_code"].as_str()), (401, Some("DCS.1001")));

    // Coarse: neither path is an order of magnitude slower.
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (u, k) = (median(&mut unknown), median(&mut known));
    assert!(
        u < k * 10 + Duration::from_millis(50) && k < u * 10 + Duration::from_millis(50),
        "unknown {u:?} vs known {k:?}"
    );

    // A credential created now works at once; an unknown AK is asked
    // again once its short memory lapses.
    let (s, _) = app
        .call_as(
            &app.credential_for("p2").await,
            Method::GET,
            "/v2/p2/instances",
            None,
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(dcs_backup::api::auth::NEGATIVE_TTL + Duration::from_millis(200)).await;
    let before = lookups();
    app.call_as(&stranger, Method::GET, &path, None).await;
    assert_eq!(lookups() - before, 1);
}

#[tokio::test]
async fn used_signatures_are_purged_once_out_of_the_window() {
    let app = TestApp::spawn().await;
    let c = app.catalog();
    let now = dcs_backup::model::now_millis();
    assert!(c.remember_signature("AK", "old", now - 1).await.unwrap());
    assert!(c
        .remember_signature("AK", "live", now + 60_000)
        .await
        .unwrap());
    assert!(!c
        .remember_signature("AK", "live", now + 60_000)
        .await
        .unwrap());
    assert_eq!(c.purge_used_signatures(now).await.unwrap(), 1);
    assert!(!c
        .remember_signature("AK", "live", now + 60_000)
        .await
        .unwrap());
    if crate::common::engine() == "sqlite" {
        // The purge is a range of the expiry index, not a scan.
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as("EXPLAIN QUERY PLAN DELETE FROM used_signatures WHERE expires_at < 1")
                .fetch_all(&pool)
                .await
                .unwrap();
        let plan: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        assert!(
            plan.iter().any(|d| d.contains("used_signatures_expiry")),
            "{plan:?}"
        );
        pool.close().await;
    }
}
