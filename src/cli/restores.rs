//! `dcs-backup restore …`: restore a backup into an instance (and follow
//! it), show the plan of a dry run, list restores.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::backups::{path_id, ListFilter};
use super::client::{one_line, Client};
use super::instances::resolve;
use super::output::{self, bytes, field};
use super::progress::{self, Kind};
use super::{CliError, CliResult, ClientOpts};

#[derive(Args, Debug)]
pub struct RestoreCommand {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: RestoreAction,
}

#[derive(Subcommand, Debug)]
pub enum RestoreAction {
    /// Restore a backup into INSTANCE: its dataset becomes the backup's.
    ///
    /// The backup is read back and verified, and the target's facts checked,
    /// before anything is written; --dry-run stops there and prints the plan.
    ///
    /// With --db, --match or --type the restore is partial: only the backup's
    /// keys that match (every option given) are written, each over its
    /// namesake, and nothing else on the target changes.
    #[command(after_help = "Examples:\n  \
        dcs-backup restore create shop-cache --backup 6f1c…-… --dry-run\n  \
        dcs-backup restore create shop-cache-staging --backup 6f1c…-… --from shop-cache --wait\n  \
        dcs-backup restore create shop-cache --backup 6f1c…-… --match 'cart:*' --db 0 --dry-run")]
    Create {
        /// The instance restored into (id or name).
        instance: String,
        /// The backup's id.
        #[arg(long, value_name = "BACKUP_ID")]
        backup: String,
        /// The instance the backup was taken of, when not INSTANCE itself.
        #[arg(long, value_name = "INSTANCE")]
        from: Option<String>,
        /// A note kept with the restore record.
        #[arg(long)]
        remark: Option<String>,
        /// Follow the restore until it ends: exit 0 when it succeeded, 1 when it failed.
        #[arg(long)]
        wait: bool,
        /// Only verify and plan: print what the restore would do, write nothing
        /// (exit 1 if it would be refused).
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Partial: only keys in this database (repeatable).
        #[arg(long = "db", value_name = "N")]
        dbs: Vec<u64>,
        /// Partial: only keys matching this glob, as in SCAN MATCH (repeatable).
        #[arg(long = "match", value_name = "PATTERN")]
        patterns: Vec<String>,
        /// Partial: only keys of this type: string, list, set, zset, hash,
        /// stream or module (repeatable).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
    },
    /// List the restores into an instance, newest first.
    #[command(after_help = "Example:\n  dcs-backup restore list shop-cache --since 7d")]
    List {
        /// Instance id or name.
        instance: String,
        #[command(flatten)]
        filter: ListFilter,
    },
}

pub async fn run(cmd: RestoreCommand) -> CliResult {
    let client = Client::new(&cmd.opts)?;
    match cmd.action {
        RestoreAction::Create {
            instance,
            backup,
            from,
            remark,
            wait,
            dry_run,
            dbs,
            patterns,
            types,
        } => {
            let backup = path_id(&backup)?.to_owned();
            let target = resolve(&client, &instance).await?;
            let target_id = field(&target, "instance_id");
            // The backup's record: its size makes the restore's rate, and
            // --from must really hold it.
            let source_id = match &from {
                Some(f) => field(&resolve(&client, f).await?, "instance_id"),
                None => target_id.clone(),
            };
            let record = if from.is_some() || wait {
                find_backup(&client, &source_id, &backup).await?
            } else {
                None
            };
            if let (Some(f), None) = (&from, &record) {
                return Err(CliError::fail(format!(
                    "backup {backup} is not among the 5000 newest backups of {}",
                    one_line(f)
                )));
            }
            let mut body = json!({ "backup_id": backup });
            if let Some(r) = remark {
                body["remark"] = Value::from(r);
            }
            if dry_run {
                body["dry_run"] = Value::from(true);
            }
            if !(dbs.is_empty() && patterns.is_empty() && types.is_empty()) {
                body["filter"] = json!({"dbs": dbs, "key_patterns": patterns, "types": types});
            }
            let answer = client
                .call(
                    Method::POST,
                    &client.v2(&format!("/instances/{target_id}/restores")),
                    None,
                    Some(&body),
                )
                .await?;
            if dry_run {
                if client.json {
                    output::json(&answer.json);
                } else {
                    print_plan(&answer.json, &field(&target, "name"), &backup);
                }
                return match answer.json["accepted"].as_bool() {
                    Some(true) => Ok(()),
                    _ => Err(CliError::job(format!(
                        "the restore would be refused: {}",
                        field(&answer.json, "refusal")
                    ))),
                };
            }
            let Some(restore_id) = answer.started(&client, "restore_id", "restore id", wait)?
            else {
                return Ok(());
            };
            let size = record.as_ref().and_then(|r| r["size"].as_u64());
            let done =
                progress::wait(&client, Kind::Restore, &target_id, &restore_id, size).await?;
            if client.json {
                output::json(&done);
            } else {
                eprintln!(
                    "restore {} into {} succeeded (backup {})",
                    field(&done, "restore_name"),
                    field(&target, "name"),
                    field(&done, "backup_name")
                );
            }
            Ok(())
        }
        RestoreAction::List { instance, filter } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            let answer = client
                .call(
                    Method::GET,
                    &client.v2(&format!("/instances/{id}/restores")),
                    Some(&filter.query()?),
                    None,
                )
                .await?;
            // v2 answers 204 when no record matches.
            let json = if answer.json.is_null() {
                json!({"restore_record_response": [], "total_num": 0})
            } else {
                answer.json
            };
            if client.json {
                output::json(&json);
            } else {
                print_list(&json, &field(&inst, "name"));
            }
            Ok(())
        }
    }
}

/// The record of `backup` among the newest backups of an instance.
async fn find_backup(client: &Client, instance_id: &str, backup: &str) -> CliResult<Option<Value>> {
    let path = client.v2(&format!("/instances/{instance_id}/backups"));
    for page in 0..5 {
        let query = format!("offset={}&limit=1000", page * 1000);
        let answer = client.call(Method::GET, &path, Some(&query), None).await?;
        let items = answer.json["backup_record_response"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(b) = items
            .iter()
            .find(|b| b["backup_id"].as_str() == Some(backup))
        {
            return Ok(Some(b.clone()));
        }
        if items.len() < 1000 {
            break;
        }
    }
    Ok(None)
}

fn print_list(json: &Value, instance: &str) {
    let items = json["restore_record_response"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = json["total_num"].as_u64().unwrap_or(items.len() as u64);
    if items.is_empty() {
        println!("no restores into {instance} match");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            vec![
                field(r, "restore_id"),
                output::time(&field(r, "created_at")),
                field(r, "backup_name"),
                if r["partial"].as_bool() == Some(true) {
                    format!("{} (partial)", field(r, "status"))
                } else {
                    field(r, "status")
                },
                format!("{}%", field(r, "progress")),
                r["error_code"]
                    .as_str()
                    .map(one_line)
                    .unwrap_or_else(|| "-".into()),
                field(r, "reason"),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "CREATED (UTC)",
            "BACKUP",
            "STATUS",
            "PROGRESS",
            "ERROR",
            "REASON",
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

/// A dry run's plan, for people.
fn print_plan(plan: &Value, target: &str, backup: &str) {
    let accepted = plan["accepted"].as_bool() == Some(true);
    println!(
        "dry run: restoring backup {backup} into {target} {}; nothing was written",
        if accepted {
            "would run"
        } else {
            "would be REFUSED"
        }
    );
    let row = |k: &str, v: String| println!("  {k:<17} {v}");
    if accepted {
        let path = match plan["path"].as_str() {
            Some("feed") => {
                "feed (the target loads the RDB by replication from the service)".to_owned()
            }
            Some("slicing") => "slicing (keys sent as pipelined RESTORE commands)".to_owned(),
            Some(p) => one_line(p),
            None => "-".to_owned(),
        };
        row("path", path);
    } else {
        row("refusal", field(plan, "refusal"));
        if let Some(code) = plan["error_code"].as_str() {
            row("error code", one_line(code));
        }
    }
    let dbs = plan["databases"].as_array().cloned().unwrap_or_default();
    let keys = plan["keys"].as_u64().unwrap_or(0);
    // A refusal may come before the backup's facts were all counted.
    if accepted || keys > 0 || !dbs.is_empty() {
        row(
            "keys",
            format!(
                "{} in {}",
                plural(keys, "key"),
                plural(dbs.len() as u64, "database")
            ),
        );
        for d in &dbs {
            row(
                &format!("  db {}", d["db"].as_u64().unwrap_or(0)),
                format!(
                    "{}, {} of values",
                    plural(d["keys"].as_u64().unwrap_or(0), "key"),
                    bytes(d["bytes"].as_u64().unwrap_or(0))
                ),
            );
        }
        row(
            "memory estimate",
            bytes(plan["memory_estimate"].as_u64().unwrap_or(0)),
        );
        row(
            "estimated time",
            format!("{:.1} s", plan["estimated_seconds"].as_f64().unwrap_or(0.0)),
        );
    }
    for t in plan["targets"].as_array().cloned().unwrap_or_default() {
        let maxmemory = match t["maxmemory"].as_u64() {
            Some(0) | None => "no maxmemory".to_owned(),
            Some(m) => format!("maxmemory {}", bytes(m)),
        };
        row(
            "target",
            format!(
                "{} {} {} (RDB {}), {maxmemory}, {} used",
                field(&t, "address"),
                field(&t, "engine"),
                field(&t, "version"),
                field(&t, "rdb_version"),
                bytes(t["used_memory"].as_u64().unwrap_or(0))
            ),
        );
    }
    if let Some(replaced) = plan["keys_replaced"].as_u64() {
        row(
            "partial",
            format!(
                "{} replace keys the target holds, {} are new; nothing else changes",
                plural(replaced, "key"),
                plan["keys_added"].as_u64().unwrap_or(0)
            ),
        );
        let sample: Vec<String> = plan["replaced_sample"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.as_str().map(one_line))
            .collect();
        if !sample.is_empty() {
            row("  replaced", sample.join(", "));
        }
    }
    let decisions = plan["decisions"].as_array().cloned().unwrap_or_default();
    if !decisions.is_empty() {
        println!("  decisions");
        for d in decisions {
            if let Some(d) = d.as_str() {
                println!("    - {}", one_line(d));
            }
        }
    }
}

/// `1 key`, `2 keys`.
fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
