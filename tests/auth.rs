//! Signing, project isolation and the unauthenticated endpoints.

mod common;

use axum::http::Method;
use common::{decode, RedisServer, TestApp};
use serde_json::json;

#[tokio::test]
async fn health_and_openapi_need_no_signature_and_the_document_covers_every_endpoint() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, doc) = decode(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v2/{project_id}/instances", &["get", "post"][..]),
        (
            "/v2/{project_id}/instances/{instance_id}",
            &["get", "put", "delete"][..],
        ),
        (
            "/v2/{project_id}/instances/{instance_id}/backups",
            &["get", "post"][..],
        ),
        (
            "/v2/{project_id}/instances/{instance_id}/restores",
            &["get", "post"][..],
        ),
        (
            "/v1.0/{project_id}/instances/{instance_id}/backups",
            &["get", "post"][..],
        ),
        (
            "/v1.0/{project_id}/instances/{instance_id}/restores",
            &["get", "post"][..],
        ),
        ("/health", &["get"][..]),
        (
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}",
            &["delete"][..],
        ),
        (
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/links",
            &["post"][..],
        ),
        (
            "/v1.0/{project_id}/instances/{instance_id}/backups/{backup_id}",
            &["delete"][..],
        ),
        ("/downloads/{backup_id}/{file}", &["get"][..]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "openapi lacks {m} {path}"
            );
        }
    }
}

#[tokio::test]
async fn credentials_file_is_private_and_works() {
    let app = TestApp::spawn().await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.dir.path().join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (status, body) = app.call(Method::GET, &app.v2("/instances"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance_num"], 0);
}

#[tokio::test]
async fn every_signature_failure_is_a_401_with_a_json_body() {
    let app = TestApp::spawn().await;
    let path = app.v2("/instances");
    let good = app.cred.clone();

    // No Authorization at all.
    let (s, b) = decode(app.http.get(app.url(&path)).send().await.unwrap()).await;
    assert_eq!((s, b["error_code"].as_str()), (401, Some("DCS.1003")));

    // Wrong secret key.
    let mut wrong = good.clone();
    wrong.sk = "not-the-secret".into();
    let (s, b) = app.call_as(&wrong, Method::GET, &path, None).await;
    assert_eq!(s, 401);
    assert_eq!(b["error_code"], "DCS.1001");
    assert!(b["error_msg"].is_string());

    // Unknown access key: the same answer as a wrong secret.
    let mut unknown = good.clone();
    unknown.ak = "NOSUCHKEY0000000000".into();
    let (s2, b2) = app.call_as(&unknown, Method::GET, &path, None).await;
    assert_eq!((s2, &b2), (s, &b));

    // A query parameter changed after signing.
    let r = app
        .send_signed(
            &good,
            Method::GET,
            &format!("{path}?limit=5"),
            vec![],
            |_| {},
        )
        .await;
    assert_eq!(r.status(), 200);
    let host = app.addr.to_string();
    let headers = dcs_backup::api::auth::RequestSigner {
        ak: &good.ak,
        sk: &good.sk,
    }
    .headers(
        &Method::GET,
        &path,
        Some("limit=5"),
        &host,
        b"",
        time::OffsetDateTime::now_utc(),
    );
    let mut req = app.http.get(app.url(&format!("{path}?limit=6")));
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let (s, b) = decode(req.send().await.unwrap()).await;
    assert_eq!(s, 401, "a query changed after signing was accepted: {b}");

    // A body changed after signing.
    let headers = dcs_backup::api::auth::RequestSigner {
        ak: &good.ak,
        sk: &good.sk,
    }
    .headers(
        &Method::POST,
        &path,
        None,
        &host,
        br#"{"name":"aaaa"}"#,
        time::OffsetDateTime::now_utc(),
    );
    let mut req = app.http.post(app.url(&path)).body(r#"{"name":"bbbb"}"#);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let (s, _) = decode(req.send().await.unwrap()).await;
    assert_eq!(s, 401, "tampered body accepted");

    // A date outside the 15-minute window, correctly signed.
    let old = time::OffsetDateTime::now_utc() - time::Duration::minutes(16);
    let (s, b) = decode(
        app.send_signed_at(&good, Method::GET, &path, vec![], old, |_| {})
            .await,
    )
    .await;
    assert_eq!((s, b["error_code"].as_str()), (401, Some("DCS.1002")));
    let future = time::OffsetDateTime::now_utc() + time::Duration::minutes(16);
    let (s, _) = decode(
        app.send_signed_at(&good, Method::GET, &path, vec![], future, |_| {})
            .await,
    )
    .await;
    assert_eq!(s, 401);
    let recent = time::OffsetDateTime::now_utc() - time::Duration::minutes(14);
    let (s, _) = decode(
        app.send_signed_at(&good, Method::GET, &path, vec![], recent, |_| {})
            .await,
    )
    .await;
    assert_eq!(s, 200);

    // The date must be among the signed headers.
    let r = app
        .send_signed(&good, Method::GET, &path, vec![], |h| {
            for (k, v) in h.iter_mut() {
                if k == "authorization" {
                    *v = v.replace(
                        "SignedHeaders=content-type;host;x-sdk-date",
                        "SignedHeaders=content-type;host",
                    );
                }
            }
        })
        .await;
    assert_eq!(r.status(), 401);

    // Garbage in the Authorization header.
    let r = app
        .send_signed(&good, Method::GET, &path, vec![], |h| {
            for (k, v) in h.iter_mut() {
                if k == "authorization" {
                    *v = "SDK-HMAC-SHA256 nonsense".into();
                }
            }
        })
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn another_projects_credential_learns_nothing() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let mine = app.adopt("mine-1", redis.port, json!({})).await;
    let other = app.credential_for("otherproject42").await;

    // Asking for my project's path with the other credential: refused.
    let (s, b) = app
        .call_as(
            &other,
            Method::GET,
            &app.v2(&format!("/instances/{mine}")),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s_missing, b_missing) = app
        .call_as(
            &other,
            Method::GET,
            &app.v2(&format!("/instances/{}", uuid::Uuid::new_v4())),
            None,
        )
        .await;
    assert_eq!(
        (s, &b),
        (s_missing, &b_missing),
        "refusal must not depend on what exists"
    );
    let (s, _) = app
        .call_as(
            &other,
            Method::GET,
            &app.v2(&format!("/instances/{mine}/backups")),
            None,
        )
        .await;
    assert_eq!(s, 401);

    // In its own project, my instance does not exist.
    let own = |rest: &str| format!("/v2/{}{rest}", other.project_id);
    let (s, b) = app
        .call_as(
            &other,
            Method::GET,
            &own(&format!("/instances/{mine}")),
            None,
        )
        .await;
    let (s2, b2) = app
        .call_as(
            &other,
            Method::GET,
            &own(&format!("/instances/{}", uuid::Uuid::new_v4())),
            None,
        )
        .await;
    assert_eq!(
        (s, &b),
        (
            404,
            &json!({"error_code": "DCS.3022", "error_msg": "This DCS instance does not exist.", "error_ext_msg": null})
        )
    );
    assert_eq!((s, b), (s2, b2));
    let (s, b) = app
        .call_as(
            &other,
            Method::GET,
            &own(&format!("/instances/{mine}/backups")),
            None,
        )
        .await;
    assert_eq!((s, b["error_code"].as_str()), (404, Some("DCS.3022")));
    let (_, list) = app
        .call_as(&other, Method::GET, &own("/instances"), None)
        .await;
    assert_eq!(list["instance_num"], 0);
    let (s, _) = app
        .call_as(
            &other,
            Method::DELETE,
            &own(&format!("/instances/{mine}")),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .call_as(
            &other,
            Method::PUT,
            &own(&format!("/instances/{mine}")),
            Some(json!({"name": "stolen"})),
        )
        .await;
    assert_eq!(s, 404);
    let (_, shown) = app
        .call(Method::GET, &app.v2(&format!("/instances/{mine}")), None)
        .await;
    assert_eq!(shown["name"], "mine-1");
}

#[tokio::test]
async fn unknown_urls_are_404_in_the_dcs_shape() {
    let app = TestApp::spawn().await;
    let (s, b) = decode(app.http.get(app.url("/v3/nothing")).send().await.unwrap()).await;
    assert_eq!((s, b["error_code"].as_str()), (404, Some("DCS.4001")));
}

/// Replicas started at once on an empty catalog create one project and
/// one credential between them, written by the one that created it; a
/// later start on the same catalog creates none.
#[tokio::test]
async fn replicas_starting_at_once_on_an_empty_catalog_create_one_credential() {
    let db = common::TestDb::new().await;
    let shared = tempfile::tempdir().unwrap();
    let url = db
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", shared.path().join("catalog.db").display()));
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let starts = dirs.iter().map(|d| {
        let config = dcs_backup::config::Config::for_dir(d.path(), Some(url.clone()));
        async move { dcs_backup::server::prepare(&config).await.map(|_| ()) }
    });
    for started in futures::future::join_all(starts).await {
        started.expect("every replica starts");
    }
    let written: Vec<_> = dirs
        .iter()
        .filter(|d| d.path().join("credentials.json").exists())
        .collect();
    assert_eq!(written.len(), 1, "one replica wrote credentials.json");
    let catalog = dcs_backup::catalog::Catalog::connect(&url).await.unwrap();
    let cred: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(written[0].path().join("credentials.json")).unwrap(),
    )
    .unwrap();
    let found = catalog
        .credential(cred["ak"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the written credential is in the catalog");
    assert_eq!(found.project_id.as_str(), cred["project_id"]);

    assert_eq!(sql_count(&url, "SELECT COUNT(*) FROM credentials").await, 1);
    assert_eq!(sql_count(&url, "SELECT COUNT(*) FROM projects").await, 1);

    // A later start creates none, nor does one on a catalog from before
    // the bootstrap was recorded.
    for forget in [false, true] {
        if forget {
            sql_count(&url, "DELETE FROM settings WHERE key = 'bootstrapped'").await;
        }
        let later = tempfile::tempdir().unwrap();
        let config = dcs_backup::config::Config::for_dir(later.path(), Some(url.clone()));
        dcs_backup::server::prepare(&config).await.unwrap();
        assert!(!later.path().join("credentials.json").exists());
        assert_eq!(sql_count(&url, "SELECT COUNT(*) FROM credentials").await, 1);
    }
    catalog.close().await;
}

/// Runs one statement on the catalog at `url`; a count if it returns one.
async fn sql_count(url: &str, sql: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        n.unwrap_or(0)
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        n.unwrap_or(0)
    }
}
