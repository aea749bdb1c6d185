//! Adopting real Redis servers: topology discovery, logging in, refusing
//! what cannot work, and keeping nothing of a refused request.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::{master_with_replicas, RedisCluster, RedisServer, TestApp, TestCerts};
use serde_json::{json, Value};

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

fn adopt_body(name: &str, port: u16) -> Value {
    json!({"name": name, "engine": "Redis", "capacity": 1, "spec_code": "x", "az_codes": ["a"],
           "vpc_id": "v", "subnet_id": "s", "private_ip": "127.0.0.1", "port": port})
}

fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn standalone_server_is_adopted_with_its_version_and_shown_running() {
    let app = TestApp::spawn().await;
    let mut redis = RedisServer::start(&[]);
    let version = redis
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("redis_version:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap();
    let id = app
        .adopt(
            "standalone-1",
            redis.port,
            json!({"description": "cache for the shop"}),
        )
        .await;
    let b = show(&app, &id).await;
    assert_eq!(b["instance_id"], id.as_str());
    assert_eq!(b["name"], "standalone-1");
    assert_eq!(b["description"], "cache for the shop");
    assert_eq!(b["engine_version"], version.as_str());
    assert_eq!(b["cache_mode"], "single");
    assert_eq!(b["port"], redis.port);
    assert_eq!(b["ip"], "127.0.0.1");
    assert_eq!(b["status"], "RUNNING");
    assert_eq!(b["sharding_count"], 1);
    assert_eq!(b["replica_count"], 0);
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));

    // Status follows reachability.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(show(&app, &id).await["status"], "ERROR");
    let (_, list) = app.call(Method::GET, &app.v2("/instances"), None).await;
    assert_eq!(list["instances"][0]["status"], "ERROR");
}

#[tokio::test]
async fn master_with_replica_is_ha_and_a_replica_address_leads_to_its_master() {
    let app = TestApp::spawn().await;
    let (master, replicas) = master_with_replicas(1);
    let id = app.adopt("ha-1", master.port, json!({})).await;
    let b = show(&app, &id).await;
    assert_eq!(b["cache_mode"], "ha");
    assert_eq!(b["replica_count"], 1);
    assert_eq!(
        b["shards"][0]["replicas"][0],
        format!("127.0.0.1:{}", replicas[0].port)
    );

    let via_replica = app.adopt("ha-2", replicas[0].port, json!({})).await;
    let b = show(&app, &via_replica).await;
    assert_eq!(b["cache_mode"], "ha");
    assert_eq!(
        b["shards"][0]["master"],
        format!("127.0.0.1:{}", master.port)
    );
}

#[tokio::test]
async fn cluster_is_discovered_with_every_shard_and_replica() {
    let app = TestApp::spawn().await;
    let cluster = RedisCluster::start(3, 1);
    let id = app
        .adopt("cluster-1", cluster.first_port(), json!({}))
        .await;
    let b = show(&app, &id).await;
    assert_eq!(b["cache_mode"], "cluster");
    assert_eq!(b["sharding_count"], 3);
    assert_eq!(b["replica_count"], 3);
    let mut covered = 0u32;
    for shard in b["shards"].as_array().unwrap() {
        assert_eq!(shard["replicas"].as_array().unwrap().len(), 1);
        for range in shard["slots"].as_array().unwrap() {
            let (a, z) = range.as_str().unwrap().split_once('-').unwrap();
            covered += z.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1;
        }
    }
    assert_eq!(covered, 16384);
}

#[tokio::test]
async fn passwords_and_acl_users_are_checked_against_the_server() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--requirepass", "s3cret!"]);
    redis.cli(&[
        "-a",
        "s3cret!",
        "--no-auth-warning",
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">bk-pass",
        "+@all",
        "~*",
    ]);

    let (s, b) = app
        .call(
            Method::POST,
            &app.v2("/instances"),
            Some(with(
                adopt_body("pw-1", redis.port),
                json!({"password": "wrong"}),
            )),
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4080")),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2("/instances"),
            Some(adopt_body("pw-1", redis.port)),
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4080")),
        "no password: {b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2("/instances"),
            Some(with(
                adopt_body("pw-1", redis.port),
                json!({"access_user": "backup", "password": "s3cret!"}),
            )),
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4080")),
        "user with the default password: {b}"
    );
    assert_eq!(
        instance_count(&app).await,
        0,
        "refused adoptions must store nothing"
    );

    let id = app
        .adopt("pw-1", redis.port, json!({"password": "s3cret!"}))
        .await;
    assert_eq!(show(&app, &id).await["no_password_access"], "false");
    let id = app
        .adopt(
            "acl-1",
            redis.port,
            json!({"access_user": "backup", "password": "bk-pass"}),
        )
        .await;
    let b = show(&app, &id).await;
    assert_eq!(b["access_user"], "backup");
    assert_eq!(b["status"], "RUNNING");
    assert!(
        !b.to_string().contains("bk-pass"),
        "the password must never be shown"
    );
}

#[tokio::test]
async fn tls_servers_are_adopted_with_the_configured_ca() {
    let certs = TestCerts::new();
    let ca = certs.ca();
    let app = TestApp::spawn_with(|c| c.redis_ca_file = Some(ca)).await;
    let redis = RedisServer::start_tls(&certs);
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2("/instances"),
            Some(adopt_body("tls-1", redis.port)),
        )
        .await;
    assert_eq!(s, 400, "plain text to a TLS port must fail: {b}");
    let id = app
        .adopt("tls-1", redis.port, json!({"enable_ssl": true}))
        .await;
    let b = show(&app, &id).await;
    assert_eq!(b["enable_ssl"], true);
    assert_eq!(b["status"], "RUNNING");

    // Without the CA the server's certificate is not trusted.
    let untrusting = TestApp::spawn().await;
    let (s, b) = untrusting
        .call(
            Method::POST,
            &untrusting.v2("/instances"),
            Some(with(
                adopt_body("tls-2", redis.port),
                json!({"enable_ssl": true}),
            )),
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4800")),
        "{b}"
    );
    assert!(b["error_msg"].as_str().unwrap().contains("enable_ssl"));
}

#[tokio::test]
async fn bad_adoption_requests_name_the_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let dead = common::free_port();
    let long = "x".repeat(1025);
    let cases: Vec<(Value, &str, &str)> = vec![
        (adopt_body("abc", redis.port), "DCS.4010", "name too short"),
        (
            adopt_body(&"n".repeat(65), redis.port),
            "DCS.4010",
            "name too long",
        ),
        (
            adopt_body("bad name!", redis.port),
            "DCS.4010",
            "name characters",
        ),
        (
            with(adopt_body("good-name", redis.port), json!({"name": 42})),
            "DCS.4010",
            "name type",
        ),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"description": long}),
            ),
            "DCS.4011",
            "description",
        ),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"engine": "Memcached"}),
            ),
            "DCS.4006",
            "engine",
        ),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"private_ip": ""}),
            ),
            "DCS.4800",
            "empty address",
        ),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"private_ip": "a b"}),
            ),
            "DCS.4800",
            "address chars",
        ),
        (
            with(adopt_body("good-name", redis.port), json!({"port": 70000})),
            "DCS.4800",
            "port range",
        ),
        (
            with(adopt_body("good-name", redis.port), json!({"port": "6379"})),
            "DCS.4800",
            "port type",
        ),
        (adopt_body("good-name", dead), "DCS.4800", "unreachable"),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"enable_ssl": "maybe"}),
            ),
            "DCS.4800",
            "ssl flag",
        ),
        (
            with(
                adopt_body("good-name", redis.port),
                json!({"instance_backup_policy": {"backup_type": "hourly"}}),
            ),
            "DCS.4073",
            "policy type",
        ),
    ];
    for (body, code, what) in cases {
        let (s, b) = app
            .call(Method::POST, &app.v2("/instances"), Some(body))
            .await;
        assert_eq!(
            (s, b["error_code"].as_str()),
            (400, Some(code)),
            "{what}: {b}"
        );
        assert!(b["error_msg"].is_string());
    }
    let (s, b) = app.call(Method::POST, &app.v2("/instances"), None).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("DCS.4004")));
    let resp = app
        .send_signed(
            &app.cred,
            Method::POST,
            &app.v2("/instances"),
            b"{not json".to_vec(),
            |_| {},
        )
        .await;
    let (s, b) = common::decode(resp).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("DCS.4005")));
    assert_eq!(instance_count(&app).await, 0);

    app.adopt("good-name", redis.port, json!({})).await;
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2("/instances"),
            Some(adopt_body("good-name", redis.port)),
        )
        .await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("DCS.4060")));
    assert_eq!(instance_count(&app).await, 1);
}

#[tokio::test]
async fn modify_changes_what_it_says_and_refuses_a_connection_that_does_not_work() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let other = RedisServer::start(&["--requirepass", "pw2"]);
    let id = app.adopt("mod-1", redis.port, json!({})).await;
    let path = app.v2(&format!("/instances/{id}"));

    let policy = json!({"backup_type": "auto", "save_days": 3,
        "periodical_backup_plan": {"period_type": "weekly", "backup_at": [1, 7], "begin_at": "23:00-00:00",
                                   "timezone_offset": "GMT+08:00"}});
    let (s, b) = app
        .call(Method::PUT, &path, Some(json!({"name": "mod-2", "description": "renamed", "instance_backup_policy": policy})))
        .await;
    assert_eq!(s, 204, "{b}");
    let b = show(&app, &id).await;
    assert_eq!(b["name"], "mod-2");
    assert_eq!(b["description"], "renamed");
    let p = &b["instance_backup_policy"];
    assert_eq!(p["policy"], policy);
    assert!(p["backup_policy_id"].is_string());
    assert_eq!(p["tenant_id"], app.cred.project_id.as_str());

    // A connection that does not work changes nothing.
    let (s, b) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"port": other.port, "name": "mod-3"})),
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4080")),
        "{b}"
    );
    let b = show(&app, &id).await;
    assert_eq!(
        (b["name"].as_str(), b["port"].as_u64()),
        (Some("mod-2"), Some(u64::from(redis.port)))
    );

    // One that works is taken, topology included.
    let (s, _) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"port": other.port, "password": "pw2"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(show(&app, &id).await["port"], other.port);

    // Invalid policies, one by one, change nothing.
    for (bad, code) in [
        (
            json!({"backup_type": "auto", "save_days": 0, "periodical_backup_plan": {"period_type": "weekly", "backup_at": [1], "begin_at": "01:00-02:00"}}),
            "DCS.4072",
        ),
        (json!({"backup_type": "nope"}), "DCS.4073"),
        (
            json!({"backup_type": "auto", "save_days": 2, "periodical_backup_plan": {"period_type": "monthly", "backup_at": [1], "begin_at": "01:00-02:00"}}),
            "DCS.4074",
        ),
        (
            json!({"backup_type": "auto", "save_days": 2, "periodical_backup_plan": {"period_type": "weekly", "backup_at": [8], "begin_at": "01:00-02:00"}}),
            "DCS.4075",
        ),
        (
            json!({"backup_type": "auto", "save_days": 2, "periodical_backup_plan": {"period_type": "weekly", "backup_at": [1], "begin_at": "01:00-03:00"}}),
            "DCS.4076",
        ),
    ] {
        let (s, b) = app
            .call(
                Method::PUT,
                &path,
                Some(json!({"name": "mod-9", "instance_backup_policy": bad})),
            )
            .await;
        assert_eq!((s, b["error_code"].as_str()), (400, Some(code)), "{b}");
    }
    let b = show(&app, &id).await;
    assert_eq!(b["name"], "mod-2");
    assert_eq!(b["instance_backup_policy"]["policy"], policy);
}

#[tokio::test]
async fn delete_hides_the_instance_but_keeps_its_records() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let id = app.adopt("del-1", redis.port, json!({})).await;
    let inst = dcs_backup::model::InstanceId::parse(&id).unwrap();
    let rec = app
        .catalog()
        .insert_backup(&dcs_backup::dev::synthetic_backup(
            &app.catalog().instance_any(&inst).await.unwrap().unwrap(),
            1,
            dcs_backup::model::now_millis(),
        ))
        .await
        .unwrap();
    let (s, _) = app
        .call(Method::DELETE, &app.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!(s, 204);
    let (s, b) = app
        .call(Method::GET, &app.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!((s, b["error_code"].as_str()), (404, Some("DCS.3022")));
    // Deleting again: signed a second later, or it would be the same
    // signature, refused as a replay.
    let again = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let resp = app
        .send_signed_at(
            &app.cred,
            Method::DELETE,
            &app.v2(&format!("/instances/{id}")),
            vec![],
            again,
            |_| {},
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(instance_count(&app).await, 0);
    assert!(
        app.catalog().backup(&rec.id).await.unwrap().is_some(),
        "records outlive the instance"
    );
    // The name is free again. (Another body than the first adoption's:
    // the same signed bytes in the same second would be a replay.)
    app.adopt("del-1", redis.port, json!({"description": "again"}))
        .await;
}
