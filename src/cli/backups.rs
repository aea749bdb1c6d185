//! `dcs-backup backup …`: take a backup (and follow it), list, download
//! through the expiring links with every file checked against the
//! manifest's BLAKE3 as it lands, delete.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::client::{one_line, Client};
use super::instances::resolve;
use super::output::{self, bytes, field};
use super::progress::{self, Kind};
use super::when::{self, Bound};
use super::{CliError, CliResult, ClientOpts};

#[derive(Args, Debug)]
pub struct BackupCommand {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: BackupAction,
}

/// Filters shared by the listings.
#[derive(Args, Debug, Clone)]
pub struct ListFilter {
    /// How many records to show, newest first (1–1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Only records created at or after T: 2026-12-06, 2026-12-06T10:00,
    /// an RFC 3339 time, or a span back from now like 24h or 7d (UTC unless
    /// an offset is given).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only records created at or before T (a day or minute counts whole).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

impl ListFilter {
    /// The listing's query string.
    pub fn query(&self) -> CliResult<String> {
        let now = time::OffsetDateTime::now_utc();
        let mut q = format!("limit={}", self.limit);
        if let Some(s) = &self.since {
            let t = when::parse(s, Bound::Since, now)
                .map_err(|e| CliError::fail(format!("--since: {e}")))?;
            q.push_str(&format!("&begin_time={t}"));
        }
        if let Some(s) = &self.until {
            let t = when::parse(s, Bound::Until, now)
                .map_err(|e| CliError::fail(format!("--until: {e}")))?;
            q.push_str(&format!("&end_time={t}"));
        }
        Ok(q)
    }
}

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Take a backup now; prints its id. With --wait, follows it to the end.
    #[command(
        after_help = "Example:\n  dcs-backup backup create shop-cache --remark \"before the migration\" --wait"
    )]
    Create {
        /// Instance id or name.
        instance: String,
        /// `rdb` (the server's own snapshot) or `aof` (converted to commands).
        #[arg(long, default_value = "rdb", value_parser = ["rdb", "aof"])]
        format: String,
        /// A note kept with the backup (up to 128 characters).
        #[arg(long, value_name = "R")]
        remark: Option<String>,
        /// Follow the backup until it ends: exit 0 when it succeeded, 1 when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// List an instance's backups, newest first.
    #[command(
        after_help = "Example:\n  dcs-backup backup list shop-cache --since 2026-12-01 --until 2026-12-06\n  dcs-backup backup list shop-cache --limit 5 --json"
    )]
    List {
        /// Instance id or name.
        instance: String,
        #[command(flatten)]
        filter: ListFilter,
    },
    /// Download a backup's files, each checked against the manifest's
    /// BLAKE3 and size as it is written; a file that does not match is
    /// deleted and the command exits 3.
    #[command(
        after_help = "Example:\n  dcs-backup backup download shop-cache 6f1c…-… --output ./restore-me"
    )]
    Download {
        /// Instance id or name.
        instance: String,
        /// The backup's id (see `backup list`).
        backup_id: String,
        /// Directory to write the files into (created if missing).
        #[arg(long, short, default_value = ".", value_name = "DIR")]
        output: PathBuf,
    },
    /// Test-restore a backup into a sandbox (never the instance it came
    /// from) and check it; prints the test's id. With --wait, follows it:
    /// exit 0 when it passed, 1 when it failed or was skipped.
    #[command(
        after_help = "Example:\n  dcs-backup backup verify shop-cache 6f1c…-… --sample 5000 --wait"
    )]
    Verify {
        /// Instance id or name.
        instance: String,
        /// The backup's id.
        backup_id: String,
        /// `scratch` (a server the service starts) or a sandbox instance's id.
        #[arg(long, default_value = "scratch")]
        sandbox: String,
        /// Keys compared value for value (0–100000).
        #[arg(long, default_value_t = 1000)]
        sample: u64,
        /// Follow the test until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// List a backup's test restores, newest first.
    #[command(after_help = "Example:\n  dcs-backup backup verifications shop-cache 6f1c…-…")]
    Verifications {
        /// Instance id or name.
        instance: String,
        /// The backup's id.
        backup_id: String,
    },
    /// Delete a backup's files; its record stays, with status `deleted`.
    #[command(after_help = "Example:\n  dcs-backup backup delete shop-cache 6f1c…-…")]
    Delete {
        /// Instance id or name.
        instance: String,
        /// The backup's id.
        backup_id: String,
    },
}

pub async fn run(cmd: BackupCommand) -> CliResult {
    let client = Client::new(&cmd.opts)?;
    match cmd.action {
        BackupAction::Create {
            instance,
            format,
            remark,
            wait,
        } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            let mut body = json!({ "backup_format": format });
            if let Some(r) = remark {
                body["remark"] = Value::from(r);
            }
            let answer = client
                .call(
                    Method::POST,
                    &client.v2(&format!("/instances/{id}/backups")),
                    None,
                    Some(&body),
                )
                .await?;
            let Some(backup_id) = answer.started(&client, "backup_id", "backup id", wait)? else {
                return Ok(());
            };
            let record = progress::wait(&client, Kind::Backup, &id, &backup_id, None).await?;
            if client.json {
                output::json(&record);
            } else {
                eprintln!(
                    "backup {} of {} succeeded: {} ({})",
                    field(&record, "backup_name"),
                    field(&inst, "name"),
                    bytes(record["size"].as_u64().unwrap_or(0)),
                    field(&record, "backup_format"),
                );
            }
            Ok(())
        }
        BackupAction::List { instance, filter } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            let answer = client
                .call(
                    Method::GET,
                    &client.v2(&format!("/instances/{id}/backups")),
                    Some(&filter.query()?),
                    None,
                )
                .await?;
            if client.json {
                output::json(&answer.json);
                return Ok(());
            }
            print_list(&answer.json, &field(&inst, "name"));
            Ok(())
        }
        BackupAction::Download {
            instance,
            backup_id,
            output,
        } => download(&client, &instance, &backup_id, &output).await,
        BackupAction::Verify {
            instance,
            backup_id,
            sandbox,
            sample,
            wait,
        } => verify(&client, &instance, &backup_id, &sandbox, sample, wait).await,
        BackupAction::Verifications {
            instance,
            backup_id,
        } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            let list = verifications(&client, &id, &backup_id).await?;
            if client.json {
                output::json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list["verifications"]
                .as_array()
                .map(|a| a.iter().map(verification_row).collect())
                .unwrap_or_default();
            output::table(
                &[
                    "VERIFICATION",
                    "STATUS",
                    "SANDBOX",
                    "FINISHED",
                    "LOAD",
                    "CHECKED",
                    "MISMATCHES",
                    "REASON",
                ],
                &rows,
            );
            Ok(())
        }
        BackupAction::Delete {
            instance,
            backup_id,
        } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            client
                .call(
                    Method::DELETE,
                    &client.v2(&format!("/instances/{id}/backups/{}", path_id(&backup_id)?)),
                    None,
                    None,
                )
                .await?;
            if client.json {
                output::json(&json!({"backup_id": backup_id, "deleted": true}));
            } else {
                println!("deleted backup {backup_id}: its files are gone, its record stays (status deleted)");
            }
            Ok(())
        }
    }
}

async fn verifications(client: &Client, instance_id: &str, backup_id: &str) -> CliResult<Value> {
    let answer = client
        .call(
            Method::GET,
            &client.v2(&format!(
                "/instances/{instance_id}/backups/{}/verifications",
                path_id(backup_id)?
            )),
            Some("limit=100"),
            None,
        )
        .await?;
    Ok(answer.json)
}

fn verification_row(v: &Value) -> Vec<String> {
    let num = |k: &str| v[k].as_u64().map(|n| n.to_string()).unwrap_or_default();
    vec![
        field(v, "verification_id"),
        field(v, "status"),
        field(v, "sandbox"),
        v["finished_at"]
            .as_str()
            .map(output::time)
            .unwrap_or_default(),
        v["load_seconds"]
            .as_f64()
            .map(output::duration)
            .unwrap_or_default(),
        num("keys_checked"),
        num("mismatches"),
        one_line(v["reason"].as_str().unwrap_or("")),
    ]
}

async fn verify(
    client: &Client,
    instance: &str,
    backup_id: &str,
    sandbox: &str,
    sample: u64,
    wait: bool,
) -> CliResult {
    let inst = resolve(client, instance).await?;
    let id = field(&inst, "instance_id");
    let answer = client
        .call(
            Method::POST,
            &client.v2(&format!(
                "/instances/{id}/backups/{}/verifications",
                path_id(backup_id)?
            )),
            None,
            Some(&json!({"sandbox": sandbox, "sample": sample})),
        )
        .await?;
    let Some(vid) = answer.started(client, "verification_id", "verification id", wait)? else {
        return Ok(());
    };
    loop {
        let list = verifications(client, &id, backup_id).await?;
        let rec = list["verifications"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["verification_id"] == vid.as_str()))
            .cloned()
            .unwrap_or_default();
        match rec["status"].as_str() {
            Some("passed") => {
                if client.json {
                    output::json(&rec);
                } else {
                    eprintln!(
                        "test restore passed: loaded in {}, {} keys compared, no mismatch",
                        rec["load_seconds"]
                            .as_f64()
                            .map(output::duration)
                            .unwrap_or_default(),
                        rec["keys_checked"].as_u64().unwrap_or(0)
                    );
                }
                return Ok(());
            }
            Some(s @ ("failed" | "skipped")) => {
                if client.json {
                    output::json(&rec);
                }
                return Err(CliError::job(format!(
                    "test restore {s}: {}",
                    one_line(rec["reason"].as_str().unwrap_or(""))
                )));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

/// An id as it may go into a path: what the service's ids are made of.
pub fn path_id(id: &str) -> CliResult<&str> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(id)
    } else {
        Err(CliError::fail(format!(
            "{:?} is not a backup id (see `dcs-backup backup list INSTANCE`)",
            one_line(id)
        )))
    }
}

fn print_list(json: &Value, instance: &str) {
    let items = json["backup_record_response"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = json["total_num"].as_u64().unwrap_or(items.len() as u64);
    if items.is_empty() {
        println!("no backups of {instance} match");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|b| {
            let error = b["error_code"]
                .as_str()
                .map(one_line)
                .unwrap_or_else(|| "-".into());
            vec![
                field(b, "backup_id"),
                output::time(&field(b, "created_at")),
                field(b, "backup_type"),
                field(b, "backup_format"),
                field(b, "status"),
                format!("{}%", field(b, "progress")),
                bytes(b["size"].as_u64().unwrap_or(0)),
                error,
                field(b, "remark"),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "CREATED (UTC)",
            "TYPE",
            "FORMAT",
            "STATUS",
            "PROGRESS",
            "SIZE",
            "ERROR",
            "REMARK",
        ],
        &rows,
    );
    if total > items.len() as u64 {
        println!(
            "({} of {total} shown; use --limit, --since, --until)",
            items.len()
        );
    }
}

/// A file name the service gave, accepted only if it is a plain name.
fn safe_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then_some(name)
}

async fn download(client: &Client, instance: &str, backup_id: &str, dir: &Path) -> CliResult {
    let inst = resolve(client, instance).await?;
    let id = field(&inst, "instance_id");
    let answer = client
        .call(
            Method::POST,
            &client.v2(&format!(
                "/instances/{id}/backups/{}/links",
                path_id(backup_id)?
            )),
            None,
            Some(&json!({"expiration": 3600})),
        )
        .await?;
    let links = answer.json["links"].as_array().cloned().unwrap_or_default();
    if links.is_empty() {
        return Err(CliError::fail(format!(
            "backup {backup_id} has no files to download"
        )));
    }
    // Check every entry before writing anything.
    let mut files = Vec::with_capacity(links.len());
    for l in &links {
        let name = l["file_name"].as_str().and_then(safe_name).ok_or_else(|| {
            CliError::fail("the service named a file with characters a file name may not have")
        })?;
        let (Some(size), Some(blake3), Some(link)) = (
            l["size"].as_u64(),
            l["blake3"]
                .as_str()
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
            l["link"].as_str(),
        ) else {
            return Err(CliError::fail(format!(
                "the service gave no size and BLAKE3 for {name}; refusing to download a file that cannot be checked"
            )));
        };
        if dir.join(name).exists() {
            return Err(CliError::fail(format!(
                "{} already exists; remove it or choose another --output",
                dir.join(name).display()
            )));
        }
        files.push((
            name.to_owned(),
            size,
            blake3.to_ascii_lowercase(),
            link.to_owned(),
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::fail(format!("cannot create {}: {e}", dir.display())))?;
    let mut total = 0;
    let mut report = Vec::new();
    for (name, size, blake3, link) in &files {
        fetch_file(client, link, &dir.join(name), *size, blake3).await?;
        total += size;
        if !client.json {
            println!(
                "{}  {}  blake3 {}  ok",
                dir.join(name).display(),
                bytes(*size),
                &blake3[..16]
            );
        }
        report.push(
            json!({"file_name": name, "size": size, "blake3": blake3, "path": dir.join(name)}),
        );
    }
    if client.json {
        output::json(&json!({"backup_id": backup_id, "files": report}));
    } else {
        eprintln!(
            "downloaded {} file{} ({}) of backup {backup_id}; every file matched its manifest checksum",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            bytes(total)
        );
    }
    Ok(())
}

/// Streams one file to `dest` through a `.part` file, hashing as it
/// lands; renames it into place only when size and BLAKE3 match.
async fn fetch_file(
    client: &Client,
    link: &str,
    dest: &Path,
    size: u64,
    blake3: &str,
) -> CliResult {
    let part = dest.with_extension(match dest.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".to_owned(),
    });
    let result = write_checked(client, link, &part, size, blake3).await;
    match result {
        Ok(()) => std::fs::rename(&part, dest).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            CliError::fail(format!("cannot move {} into place: {e}", part.display()))
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

async fn write_checked(
    client: &Client,
    link: &str,
    part: &Path,
    size: u64,
    blake3: &str,
) -> CliResult {
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".part").to_owned())
        .unwrap_or_default();
    let mut resp = client.get_link(link).await?;
    let mut file = std::fs::File::create(part)
        .map_err(|e| CliError::fail(format!("cannot create {}: {e}", part.display())))?;
    let mut hasher = blake3::Hasher::new();
    let mut got: u64 = 0;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Err(CliError::fail(format!(
                    "the download of {name} broke off after {}: {}",
                    bytes(got),
                    one_line(&e.to_string())
                )))
            }
        };
        got += chunk.len() as u64;
        if got > size {
            return Err(CliError::integrity(format!(
                "{name}: more bytes arrived than the manifest's {size}; the file was deleted"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| CliError::fail(format!("cannot write {}: {e}", part.display())))?;
    }
    file.sync_all()
        .map_err(|e| CliError::fail(format!("cannot write {}: {e}", part.display())))?;
    if got != size {
        return Err(CliError::integrity(format!(
            "{name}: {got} bytes arrived, the manifest says {size}; the file was deleted"
        )));
    }
    let hash = hasher.finalize().to_hex();
    if hash.as_str() != blake3 {
        return Err(CliError::integrity(format!(
            "{name}: BLAKE3 {} does not match the manifest's {blake3}; the file was deleted",
            hash.as_str()
        )));
    }
    Ok(())
}
