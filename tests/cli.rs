//! The command-line client as a person uses it: the `dcs-backup` binary
//! run as a subprocess against a real service (`dcs-backup serve`, also a
//! subprocess) and real `redis-server`s. Runs once, on SQLite.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{free_port, RedisServer, ServiceProcess};
use serde_json::Value;

fn binary() -> PathBuf {
    std::env::var_os("DCS_BACKUP_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_dcs-backup").into())
}

/// What one run of the client left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// A service with its own data dir, and the client pointed at it.
struct Session {
    svc: ServiceProcess,
    _tmp: tempfile::TempDir,
    work: PathBuf,
}

impl Session {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        std::fs::create_dir_all(&data).expect("data dir");
        let svc = ServiceProcess::start(&data, None);
        Self {
            svc,
            _tmp: tmp,
            work,
        }
    }

    fn data(&self) -> &Path {
        &self.svc.dir
    }

    fn server(&self) -> String {
        format!("http://{}", self.svc.addr)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args)
            .current_dir(&self.work)
            .env("DCS_BACKUP_SERVER", self.server())
            .env(
                "DCS_BACKUP_CREDENTIALS",
                self.data().join("credentials.json"),
            )
            .env_remove("DCS_BACKUP_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("the client runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and insists on exit 0.
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "{args:?} failed\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r
    }

    fn adopt(&self, name: &str, redis: &RedisServer) -> String {
        let r = self.ok(&[
            "instance",
            "add",
            name,
            "--address",
            &format!("127.0.0.1:{}", redis.port),
        ]);
        let id = r.stdout.trim().to_owned();
        assert!(
            uuid::Uuid::try_parse(&id).is_ok(),
            "instance add prints the new id, got {:?}",
            r.stdout
        );
        id
    }

    /// The manifest the service stored for a backup (local store).
    fn manifest(&self, instance_id: &str, backup_id: &str) -> Value {
        let path = self
            .data()
            .join("backups")
            .join(&self.svc.cred.project_id)
            .join(instance_id)
            .join(backup_id)
            .join("manifest.json");
        serde_json::from_slice(&std::fs::read(&path).expect("manifest.json")).expect("manifest")
    }

    fn stored_file(&self, instance_id: &str, backup_id: &str, name: &str) -> PathBuf {
        self.data()
            .join("backups")
            .join(&self.svc.cred.project_id)
            .join(instance_id)
            .join(backup_id)
            .join(name)
    }
}

/// Strings of a few MiB in two databases, a hash and a key with a TTL.
fn fill(redis: &RedisServer, keys: usize, value_len: usize) {
    let mut buf = Vec::new();
    let value = "v".repeat(value_len);
    for i in 0..keys {
        buf.extend_from_slice(&common::resp(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            value.as_bytes(),
        ]));
    }
    buf.extend_from_slice(&common::resp(&[b"SELECT", b"3"]));
    buf.extend_from_slice(&common::resp(&[b"HSET", b"user:1", b"name", b"ada"]));
    buf.extend_from_slice(&common::resp(&[b"SET", b"session", b"x", b"EX", b"86400"]));
    redis.pipe(&buf);
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn a_new_user_adopts_backs_up_downloads_and_restores() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    let staging = RedisServer::start(&[]);
    fill(&shop, 20_000, 100);

    let shop_id = s.adopt("shop", &shop);
    let staging_id = s.adopt("staging", &staging);

    // Listing: an aligned table naming both, the instance's address.
    let list = s.ok(&["instance", "list"]);
    let rows = lines(&list.stdout);
    assert_eq!(rows.len(), 3, "{}", list.stdout);
    assert!(rows[0].starts_with("ID "), "{}", list.stdout);
    let name_col = rows[0].find("NAME").expect("NAME column");
    for (row, name) in [
        (rows.iter().find(|r| r.contains(&shop_id)), "shop"),
        (rows.iter().find(|r| r.contains(&staging_id)), "staging"),
    ] {
        let row = row.expect("a row per instance");
        assert_eq!(
            &row[name_col..name_col + name.len()],
            name,
            "{}",
            list.stdout
        );
        assert!(row.contains("RUNNING"), "{row}");
    }
    let show = s.ok(&["instance", "show", "shop"]);
    assert!(show.stdout.contains(&shop_id), "{}", show.stdout);
    assert!(
        show.stdout.contains(&format!("127.0.0.1:{}", shop.port)),
        "{}",
        show.stdout
    );
    let by_id = s.ok(&["instance", "show", &shop_id, "--json"]).json();
    assert_eq!(by_id["name"], "shop");

    // Back up and follow it: the id on stdout, plain progress on stderr.
    let created = s.ok(&[
        "backup",
        "create",
        "shop",
        "--remark",
        "before the migration",
        "--wait",
    ]);
    let backup_id = created.stdout.trim().to_owned();
    assert!(
        uuid::Uuid::try_parse(&backup_id).is_ok(),
        "{}",
        created.stdout
    );
    assert!(
        !created.stderr.contains('\r'),
        "no redrawing when stderr is not a terminal"
    );
    let progress: Vec<&str> = lines(&created.stderr);
    assert!(
        progress.iter().all(|l| l.starts_with("backup backup_")),
        "{}",
        created.stderr
    );
    assert!(
        progress
            .iter()
            .any(|l| l.contains(": waiting") || l.contains(": backuping")),
        "{}",
        created.stderr
    );
    assert!(
        progress.iter().any(|l| l.contains(": succeed  100.00%")),
        "{}",
        created.stderr
    );
    assert!(
        progress.last().is_some_and(|l| l.contains("succeeded")),
        "{}",
        created.stderr
    );
    // At most a line per status change and one every 5 s in between.
    assert!(progress.len() <= 6, "{}", created.stderr);

    let table = s.ok(&["backup", "list", "shop"]);
    let row = lines(&table.stdout)
        .into_iter()
        .find(|l| l.contains(&backup_id))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(
        row.contains("succeed")
            && row.contains("manual")
            && row.contains("RDB")
            && row.contains("before the migration"),
        "{row}"
    );
    let listed = s.ok(&["backup", "list", "shop", "--json"]).json();
    assert_eq!(listed["total_num"], 1);
    let record = &listed["backup_record_response"][0];
    assert_eq!(record["backup_id"], backup_id.as_str());
    assert_eq!(record["status"], "succeed");

    // Download: every file as the manifest says, byte for byte as stored.
    let out = s.work.join("downloaded");
    let dl = s.ok(&[
        "backup",
        "download",
        "shop",
        &backup_id,
        "--output",
        out.to_str().unwrap(),
    ]);
    let manifest = s.manifest(&shop_id, &backup_id);
    let files = manifest["files"].as_array().expect("files");
    assert!(!files.is_empty());
    for f in files {
        let name = f["name"].as_str().unwrap();
        let got = std::fs::read(out.join(name)).expect("downloaded file");
        assert_eq!(got.len() as u64, f["size"].as_u64().unwrap());
        assert_eq!(
            blake3::hash(&got).to_hex().as_str(),
            f["blake3"].as_str().unwrap()
        );
        assert_eq!(
            got,
            std::fs::read(s.stored_file(&shop_id, &backup_id, name)).unwrap()
        );
        assert!(dl.stdout.contains(name), "{}", dl.stdout);
    }
    assert!(
        dl.stderr.contains("matched its manifest checksum"),
        "{}",
        dl.stderr
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty());

    // A dry run says what would happen and writes nothing.
    let plan = s.ok(&[
        "restore",
        "create",
        "staging",
        "--backup",
        &backup_id,
        "--from",
        "shop",
        "--dry-run",
    ]);
    assert!(plan.stdout.contains("would run"), "{}", plan.stdout);
    for what in [
        "path",
        "keys",
        "20002 keys",
        "db 3",
        "memory estimate",
        "estimated time",
        &format!("127.0.0.1:{}", staging.port),
        "decisions",
    ] {
        assert!(
            plan.stdout.contains(what),
            "dry run lacks {what:?}:\n{}",
            plan.stdout
        );
    }
    assert_eq!(staging.dbsize(0), 0, "a dry run writes nothing");
    let none = s.ok(&["restore", "list", "staging"]);
    assert!(none.stdout.contains("no restores"), "{}", none.stdout);

    // Then for real: the data arrives.
    let restored = s.ok(&[
        "restore", "create", "staging", "--backup", &backup_id, "--from", "shop", "--wait",
    ]);
    assert!(
        uuid::Uuid::try_parse(restored.stdout.trim()).is_ok(),
        "{}",
        restored.stdout
    );
    assert!(restored.stderr.contains("succeeded"), "{}", restored.stderr);
    assert_eq!(staging.digest(), shop.digest());
    assert_eq!(staging.dbsize(0), 20_000);
    let restores = s.ok(&["restore", "list", "staging", "--json"]).json();
    assert_eq!(restores["total_num"], 1);
    assert_eq!(restores["restore_record_response"][0]["status"], "succeed");
    let table = s.ok(&["restore", "list", "staging"]);
    assert!(table.stdout.contains("succeed"), "{}", table.stdout);

    // Deleting keeps the record.
    s.ok(&["backup", "delete", "shop", &backup_id]);
    let after = s.ok(&["backup", "list", "shop", "--json"]).json();
    assert_eq!(after["backup_record_response"][0]["status"], "deleted");

    // Removing the instance.
    s.ok(&["instance", "remove", "staging"]);
    let gone = s.run(&["instance", "show", "staging"]);
    assert_eq!(gone.code, 2);
    assert!(
        gone.stderr
            .contains("no instance has the id or name \"staging\""),
        "{}",
        gone.stderr
    );
}

#[test]
fn failed_jobs_exit_non_zero_with_their_code_and_reason() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    fill(&shop, 20_000, 200);
    // A target too small for the dataset: the plan refuses it.
    let small = RedisServer::start(&["--maxmemory", "2mb"]);
    small.cli(&["SET", "keep", "me"]);
    s.adopt("shop", &shop);
    s.adopt("small", &small);
    let backup_id = s
        .ok(&["backup", "create", "shop", "--wait"])
        .stdout
        .trim()
        .to_owned();

    let plan = s.run(&[
        "restore",
        "create",
        "small",
        "--backup",
        &backup_id,
        "--from",
        "shop",
        "--dry-run",
    ]);
    assert_eq!(plan.code, 1, "a refused dry run exits 1: {}", plan.stderr);
    assert!(plan.stdout.contains("would be REFUSED"), "{}", plan.stdout);
    assert!(plan.stdout.contains("maxmemory"), "{}", plan.stdout);

    let r = s.run(&[
        "restore", "create", "small", "--backup", &backup_id, "--from", "shop", "--wait",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let last = lines(&r.stderr)
        .last()
        .copied()
        .unwrap_or_default()
        .to_owned();
    assert!(last.starts_with("error: restore restore_"), "{}", r.stderr);
    assert!(last.contains("failed: dcs.08.0001"), "{last}");
    assert!(last.contains("reason: refused before any write"), "{last}");
    assert_eq!(
        small.cli(&["GET", "keep"]).trim(),
        "me",
        "the target is untouched"
    );

    // A backup of a server that has gone away.
    let mut doomed = RedisServer::start(&[]);
    s.adopt("doomed", &doomed);
    doomed.kill();
    let r = s.run(&["backup", "create", "doomed", "--wait"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let last = lines(&r.stderr)
        .last()
        .copied()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("error: backup backup_") && last.contains("failed: dcs.08."),
        "{}",
        r.stderr
    );
}

#[test]
fn errors_are_one_clear_line() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    s.adopt("shop", &shop);

    // A wrong secret key.
    let mut cred: Value =
        serde_json::from_slice(&std::fs::read(s.data().join("credentials.json")).unwrap()).unwrap();
    cred["sk"] = Value::from("not-the-secret-key");
    let bad = s.work.join("bad.json");
    std::fs::write(&bad, cred.to_string()).unwrap();
    let r = s.run(&["instance", "list", "--credentials", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert_eq!(lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: DCS.1001 "), "{}", r.stderr);
    assert!(
        r.stderr.contains("(HTTP 401)") && r.stderr.contains("secret key"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('{') && r.stdout.is_empty(),
        "{}",
        r.stderr
    );

    // An error the service answers: its DCS code and message, no JSON.
    let long = "x".repeat(200);
    let r = s.run(&["backup", "create", "shop", "--remark", &long]);
    assert_eq!(r.code, 2);
    assert_eq!(lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: DCS.4098 ") && r.stderr.contains("(HTTP 400)"),
        "{}",
        r.stderr
    );
    let r = s.run(&[
        "backup",
        "delete",
        "shop",
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr.trim(),
        "error: DCS.4800 Invalid backup_id in the request. (HTTP 400)"
    );

    // No service there.
    let port = free_port();
    let r = s.run(&[
        "instance",
        "list",
        "--server",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the service at http://127.0.0.1:{port}"
        )),
        "{}",
        r.stderr
    );

    // No credentials file.
    let r = s.run(&["instance", "list", "--credentials", "missing.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cannot read credentials from missing.json"),
        "{}",
        r.stderr
    );

    // Usage errors are clap's exit 2, and name what is wrong.
    let r = s.run(&["backup", "list", "shop", "--since", "last tuesday"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--since") && r.stderr.contains("is not a time"),
        "{}",
        r.stderr
    );
    let r = s.run(&["backup", "list", "nobody"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("no instance has the id or name \"nobody\""),
        "{}",
        r.stderr
    );
}

#[test]
fn policies_are_set_shown_and_turned_off() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    s.adopt("shop", &shop);
    let r = s.ok(&["policy", "show", "shop"]);
    assert_eq!(r.stdout.trim(), "shop: automatic backups off");
    let r = s.ok(&[
        "policy",
        "set",
        "shop",
        "--days",
        "1,3,5",
        "--window",
        "02:00-03:00",
        "--keep-days",
        "7",
        "--timezone",
        "GMT+08:00",
    ]);
    assert_eq!(
        r.stdout.trim(),
        "shop: automatic backups on, Mon,Wed,Fri 02:00-03:00 GMT+08:00, keep 7 days"
    );
    let p = s.ok(&["policy", "show", "shop", "--json"]).json();
    assert_eq!(p["policy"]["backup_type"], "auto");
    assert_eq!(p["policy"]["save_days"], 7);
    assert_eq!(
        p["policy"]["periodical_backup_plan"]["backup_at"],
        serde_json::json!([1, 3, 5])
    );
    assert_eq!(
        p["policy"]["periodical_backup_plan"]["begin_at"],
        "02:00-03:00"
    );
    let list = s.ok(&["instance", "list"]);
    assert!(
        list.stdout.contains("Mon,Wed,Fri 02:00-03:00"),
        "{}",
        list.stdout
    );
    // A window the service refuses is named before anything is sent.
    let r = s.run(&[
        "policy",
        "set",
        "shop",
        "--days",
        "1",
        "--window",
        "02:00-04:00",
        "--keep-days",
        "3",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--window"), "{}", r.stderr);
    let r = s.ok(&["policy", "off", "shop"]);
    assert_eq!(r.stdout.trim(), "shop: automatic backups off");
    let p = s.ok(&["policy", "show", "shop", "--json"]).json();
    assert_eq!(p["policy"]["backup_type"], "manual");
}

#[test]
fn since_and_until_select_records_by_day_and_minute() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    let id = s.adopt("shop", &shop);
    // Ten records, one a day from 2020-03-01 10:00 UTC.
    let seeded = Command::new(binary())
        .args([
            "dev",
            "seed",
            "--instance-id",
            &id,
            "--backups",
            "10",
            "--from",
            "20200301100000",
            "--step-ms",
            "86400000",
            "--data-dir",
        ])
        .arg(s.data())
        .output()
        .expect("dev seed");
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

    let days = s
        .ok(&[
            "backup",
            "list",
            "shop",
            "--since",
            "2020-03-03",
            "--until",
            "2020-03-05",
            "--json",
        ])
        .json();
    assert_eq!(days["total_num"], 3, "{days}");
    let created: Vec<&str> = days["backup_record_response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["created_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        created,
        [
            "2020-03-05T10:00:00.000Z",
            "2020-03-04T10:00:00.000Z",
            "2020-03-03T10:00:00.000Z"
        ]
    );

    // A minute bound covers its whole minute; an offset is honoured.
    let minute = s
        .ok(&[
            "backup",
            "list",
            "shop",
            "--since",
            "2020-03-07T10:00",
            "--until",
            "2020-03-07T10:00",
            "--json",
        ])
        .json();
    assert_eq!(minute["total_num"], 1);
    let offset = s
        .ok(&[
            "backup",
            "list",
            "shop",
            "--until",
            "2020-03-02T12:00:00+02:00",
            "--json",
        ])
        .json();
    assert_eq!(
        offset["total_num"], 2,
        "10:00 UTC on the 2nd is 12:00 at +02:00"
    );

    // The table says how many more there are.
    let table = s.ok(&["backup", "list", "shop", "--limit", "4"]);
    assert_eq!(lines(&table.stdout).len(), 1 + 4 + 1, "{}", table.stdout);
    assert!(table.stdout.contains("(4 of 10 shown"), "{}", table.stdout);
    let r = s.run(&["backup", "list", "shop", "--limit", "0"]);
    assert_eq!(r.code, 2);
}

#[test]
fn a_download_that_does_not_match_its_manifest_is_deleted() {
    let s = Session::start();
    let shop = RedisServer::start(&[]);
    fill(&shop, 2_000, 50);
    let id = s.adopt("shop", &shop);
    let backup_id = s
        .ok(&["backup", "create", "shop", "--wait"])
        .stdout
        .trim()
        .to_owned();
    let manifest = s.manifest(&id, &backup_id);
    let name = manifest["files"][0]["name"].as_str().unwrap().to_owned();
    // Rot one byte in the store, keeping the size.
    let stored = s.stored_file(&id, &backup_id, &name);
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let out = s.work.join("out");
    let r = s.run(&[
        "backup",
        "download",
        "shop",
        &backup_id,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&name) && r.stderr.contains("does not match the manifest"),
        "{}",
        r.stderr
    );
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "nothing is left behind: {left:?}");
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let s = Session::start();
    for cmd in [
        &["instance", "add"][..],
        &["instance", "list"],
        &["instance", "show"],
        &["instance", "remove"],
        &["backup", "create"],
        &["backup", "list"],
        &["backup", "download"],
        &["backup", "delete"],
        &["restore", "create"],
        &["restore", "list"],
        &["policy", "show"],
        &["policy", "set"],
        &["policy", "off"],
        &["pitr", "policy", "show"],
        &["pitr", "policy", "set"],
        &["pitr", "policy", "off"],
        &["pitr", "periods"],
        &["pitr", "restore"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let r = s.ok(&args);
        assert!(
            r.stdout.contains("Example"),
            "{cmd:?} --help has no example:\n{}",
            r.stdout
        );
        assert!(r.stdout.contains("--server"), "{cmd:?}");
    }
    let r = s.ok(&["backup", "--help"]);
    assert!(r.stdout.contains("Exit codes:"), "{}", r.stdout);
}

#[test]
fn a_partial_restore_from_the_command_line_replaces_only_matching_keys() {
    let s = Session::start();
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    for i in 0..10 {
        source.cli(&["SET", &format!("cart:{i}"), "from-backup"]);
        source.cli(&["SET", &format!("user:{i}"), "from-backup"]);
    }
    let id = s.adopt("shop", &source);
    let r = s.ok(&["backup", "create", "shop", "--wait"]);
    let backup = lines(&r.stdout)[0].to_owned();
    for i in 0..10 {
        source.cli(&["SET", &format!("cart:{i}"), "changed"]);
        source.cli(&["SET", &format!("user:{i}"), "changed"]);
    }
    source.cli(&["SET", "cart:new", "added later"]);

    let plan = s.ok(&[
        "restore",
        "create",
        "shop",
        "--backup",
        &backup,
        "--match",
        "cart:*",
        "--dry-run",
    ]);
    assert!(
        plan.stdout
            .contains("10 keys replace keys the target holds, 0 are new"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("nothing is flushed"),
        "{}",
        plan.stdout
    );
    assert_eq!(
        source.cli(&["GET", "cart:1"]).trim(),
        "changed",
        "a dry run wrote"
    );

    s.ok(&[
        "restore", "create", "shop", "--backup", &backup, "--match", "cart:*", "--wait",
    ]);
    for i in 0..10 {
        assert_eq!(
            source.cli(&["GET", &format!("cart:{i}")]).trim(),
            "from-backup"
        );
        assert_eq!(source.cli(&["GET", &format!("user:{i}")]).trim(), "changed");
    }
    assert_eq!(source.cli(&["GET", "cart:new"]).trim(), "added later");
    let list = s.ok(&["restore", "list", "shop"]);
    assert!(list.stdout.contains("succeed (partial)"), "{}", list.stdout);
    let json = s.ok(&["restore", "list", &id, "--json"]).json();
    assert_eq!(
        json["restore_record_response"][0]["filter"],
        serde_json::json!({"key_patterns": ["cart:*"]})
    );

    // A type the service does not know: one line with the DCS code.
    let bad = s.run(&[
        "restore", "create", "shop", "--backup", &backup, "--type", "blob",
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("DCS.4800"), "{}", bad.stderr);
    assert_eq!(lines(&bad.stderr).len(), 1, "{}", bad.stderr);
}

#[test]
fn a_backup_is_test_restored_and_its_tests_listed() {
    // Services started from here on may start scratch sandboxes.
    let server = Command::new("which")
        .arg("redis-server")
        .output()
        .expect("which");
    let server = String::from_utf8_lossy(&server.stdout).trim().to_owned();
    std::env::set_var("DCS_BACKUP_SANDBOX_SERVERS", format!("redis-7.0={server}"));
    let s = Session::start();
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "order:1", "paid"]);
    redis.cli(&["SET", "order:2", "open"]);
    s.adopt("shop", &redis);
    let backup = s.ok(&["backup", "create", "shop", "--wait"]).stdout;
    let backup = backup.lines().next().unwrap_or("").trim().to_owned();

    let r = s.ok(&[
        "backup", "verify", "shop", &backup, "--sample", "10", "--wait",
    ]);
    assert!(r.stderr.contains("test restore passed"), "{}", r.stderr);
    assert!(r.stderr.contains("2 keys compared"), "{}", r.stderr);
    let list = s.ok(&["backup", "verifications", "shop", &backup]);
    assert!(list.stdout.contains("passed"), "{}", list.stdout);
    let json = s
        .ok(&["backup", "verifications", "shop", &backup, "--json"])
        .json();
    assert_eq!(json["total_num"], 1, "{json}");
    assert_eq!(json["verifications"][0]["keys_checked"], 2, "{json}");

    // A bad id is the client's error, not a request.
    let r = s.run(&["backup", "verify", "shop", "../x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// The instant now, as `--to` takes it (RFC 3339, milliseconds, UTC).
fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Whether the periods the client lists cover `t` (RFC 3339, UTC).
fn periods_cover(s: &Session, t: &str) -> bool {
    let j = s.ok(&["pitr", "periods", "shop", "--json"]).json();
    j["restore_time"].as_array().into_iter().flatten().any(|p| {
        let (a, b) = p
            .as_str()
            .unwrap_or("/")
            .split_once('/')
            .unwrap_or(("", ""));
        // Same format, UTC: text order is time order (to the second).
        a <= t && t[..19] < b[..19]
    })
}

#[test]
fn pitr_policy_periods_and_a_restore_to_an_instant_from_the_command_line() {
    let s = Session::start();
    let shop = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    s.adopt("shop", &shop);
    let r = s.ok(&["pitr", "policy", "show", "shop"]);
    assert!(
        r.stdout.starts_with("shop: point-in-time recovery off"),
        "{}",
        r.stdout
    );
    let r = s.run(&["pitr", "policy", "set", "shop", "--interval", "4"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--interval"), "{}", r.stderr);
    let r = s.ok(&[
        "pitr",
        "policy",
        "set",
        "shop",
        "--interval",
        "30",
        "--keep-days",
        "2",
    ]);
    assert!(
        r.stdout
            .contains("point-in-time recovery on, a base every 30 min, kept 2 day(s)"),
        "{}",
        r.stdout
    );
    let p = s.ok(&["pitr", "policy", "show", "shop", "--json"]).json();
    assert_eq!(
        (&p["policy"]["enabled"], &p["policy"]["interval"]),
        (&Value::Bool(true), &Value::from(30))
    );
    let start = std::time::Instant::now();
    while s.ok(&["pitr", "periods", "shop", "--json"]).json()["total_count"] == 0 {
        assert!(start.elapsed().as_secs() < 30, "no restorable period");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    shop.pipe(&common::resp(&[b"SET", b"a", b"before"]));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let t = now_rfc3339();
    let want = shop.digest();
    std::thread::sleep(std::time::Duration::from_secs(1));
    shop.pipe(&common::resp(&[b"SET", b"a", b"after"]));
    let start = std::time::Instant::now();
    while !periods_cover(&s, &t) {
        assert!(start.elapsed().as_secs() < 30, "{t} never covered");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let table = s.ok(&["pitr", "periods", "shop", "--since", "1h"]);
    assert!(table.stdout.starts_with("FROM"), "{}", table.stdout);
    let r = s.ok(&["pitr", "restore", "shop", "--to", &t, "--wait"]);
    assert!(r.stderr.contains("restored to"), "{}", r.stderr);
    assert_eq!(shop.digest(), want, "the restore is not the instant's data");
    // A time with no history: one line, exit 2, nothing queued.
    let r = s.run(&["pitr", "restore", "shop", "--to", "2001-01-01T00:00:00Z"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("restore_time"), "{}", r.stderr);
    let r = s.ok(&["pitr", "policy", "off", "shop"]);
    assert!(r.stdout.contains("recovery off"), "{}", r.stdout);
}
