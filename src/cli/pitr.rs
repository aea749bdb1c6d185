//! `dcs-backup pitr …`: point-in-time recovery of an instance, through
//! the GeminiDB-shaped v3 API (`/v3/{project}/redis/instances/{id}/pitr…`).

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::client::{one_line, Client};
use super::instances::resolve;
use super::output::{self, field};
use super::progress::{self, Kind};
use super::when::{self, Bound};
use super::{CliError, CliResult, ClientOpts};

#[derive(Args, Debug)]
pub struct PitrCommand {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: PitrAction,
}

#[derive(Subcommand, Debug)]
pub enum PitrAction {
    /// Show, set or turn off an instance's point-in-time recovery.
    #[command(subcommand)]
    Policy(PolicyAction),
    /// List the periods an instance can be restored to any second of.
    #[command(after_help = "Examples:\n  \
        dcs-backup pitr periods shop-cache\n  \
        dcs-backup pitr periods shop-cache --since 24h\n  \
        dcs-backup pitr periods shop-cache --since 2026-12-06 --until 2026-12-06T12:00")]
    Periods {
        /// Instance id or name.
        instance: String,
        /// Periods ending at or after this time (default 8d ago): 2026-12-06,
        /// 2026-12-06T10:00, RFC 3339 with an offset, or 24h back from now.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Periods starting at or before this time (default now).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Restore an instance (or another one) to an instant of its history.
    #[command(after_help = "Examples:\n  \
        dcs-backup pitr restore shop-cache --to 2026-12-06T10:15:30.250Z --wait\n  \
        dcs-backup pitr restore shop-cache --to '2026-12-06 18:15:30+08:00' --target shop-cache-copy\n  \
        dcs-backup pitr restore shop-cache --to 10m          (ten minutes ago)\n  \
        Times without an offset are UTC.")]
    Restore {
        /// Instance whose history is restored (id or name).
        instance: String,
        /// The instant: RFC 3339 (fractions and offsets allowed),
        /// 2026-12-06 10:15:30, or a span back from now (90s, 10m).
        #[arg(long, value_name = "TIME")]
        to: String,
        /// Restore into this adopted instance instead (id or name).
        #[arg(long, value_name = "INSTANCE")]
        target: Option<String>,
        /// Follow the restore until it ends; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyAction {
    /// Show the policy and the space its data takes.
    #[command(after_help = "Example:\n  dcs-backup pitr policy show shop-cache")]
    Show {
        /// Instance id or name.
        instance: String,
    },
    /// Capture the instance's writes: a new base every INTERVAL minutes,
    /// history kept KEEP_DAYS days.
    #[command(
        after_help = "Example:\n  dcs-backup pitr policy set shop-cache --interval 30 --keep-days 3"
    )]
    Set {
        /// Instance id or name.
        instance: String,
        /// Minutes between bases (5–120; bounds the log a restore replays).
        #[arg(long, value_name = "M", default_value_t = 20,
              value_parser = clap::value_parser!(u8).range(5..=120))]
        interval: u8,
        /// Days of history kept (1–7).
        #[arg(long, value_name = "D", default_value_t = 1,
              value_parser = clap::value_parser!(u8).range(1..=7))]
        keep_days: u8,
    },
    /// Stop capturing (history already stored stays until it expires).
    #[command(after_help = "Example:\n  dcs-backup pitr policy off shop-cache")]
    Off {
        /// Instance id or name.
        instance: String,
    },
}

fn v3(client: &Client, instance_id: &str, rest: &str) -> String {
    client
        .v2(&format!("/redis/instances/{instance_id}/pitr{rest}"))
        .replacen("/v2/", "/v3/", 1)
}

pub async fn run(cmd: PitrCommand) -> CliResult {
    let client = Client::new(&cmd.opts)?;
    match cmd.action {
        PitrAction::Policy(PolicyAction::Show { instance }) => {
            let inst = resolve(&client, &instance).await?;
            show_policy(&client, &inst).await
        }
        PitrAction::Policy(PolicyAction::Set {
            instance,
            interval,
            keep_days,
        }) => {
            let inst = resolve(&client, &instance).await?;
            let body = json!({"enabled": true, "interval": interval, "keep_days": keep_days});
            let path = v3(&client, &field(&inst, "instance_id"), "/policy");
            client.call(Method::PUT, &path, None, Some(&body)).await?;
            show_policy(&client, &inst).await
        }
        PitrAction::Policy(PolicyAction::Off { instance }) => {
            let inst = resolve(&client, &instance).await?;
            let path = v3(&client, &field(&inst, "instance_id"), "/policy");
            client
                .call(Method::PUT, &path, None, Some(&json!({"enabled": false})))
                .await?;
            show_policy(&client, &inst).await
        }
        PitrAction::Periods {
            instance,
            since,
            until,
        } => {
            let now = OffsetDateTime::now_utc();
            let since = bound(
                since.as_deref().unwrap_or("8d"),
                Bound::Since,
                now,
                "--since",
            )?;
            let until = match until {
                Some(u) => bound(&u, Bound::Until, now, "--until")?,
                None => iso(now),
            };
            let inst = resolve(&client, &instance).await?;
            let path = v3(
                &client,
                &field(&inst, "instance_id"),
                "/restorable-time-periods",
            );
            let query = format!("start_time={since}&end_time={until}&limit=100");
            let answer = client.call(Method::GET, &path, Some(&query), None).await?;
            if client.json {
                output::json(&answer.json);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer.json["restore_time"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|p| {
                            let (a, b) = p.split_once('/').unwrap_or((p, ""));
                            vec![one_line(a), one_line(b), span(a, b)]
                        })
                        .collect()
                })
                .unwrap_or_default();
            if rows.is_empty() {
                println!(
                    "{}: no restorable period between {since} and {until}",
                    field(&inst, "name")
                );
            } else {
                output::table(&["FROM", "TO", "LENGTH"], &rows);
            }
            Ok(())
        }
        PitrAction::Restore {
            instance,
            to,
            target,
            wait,
        } => {
            let at = instant(&to)?;
            let inst = resolve(&client, &instance).await?;
            let target = match &target {
                Some(t) => resolve(&client, t).await?,
                None => inst.clone(),
            };
            let target_id = field(&target, "instance_id");
            let mut body = json!({ "restore_time": at });
            if target_id != field(&inst, "instance_id") {
                body["target_instance_id"] = Value::from(target_id.clone());
            }
            let path = v3(&client, &field(&inst, "instance_id"), "");
            let answer = client.call(Method::PUT, &path, None, Some(&body)).await?;
            let Some(job) = answer.started(&client, "job_id", "job id", wait)? else {
                return Ok(());
            };
            // The job is also a restore record of the target: follow it.
            let done = progress::wait(&client, Kind::Restore, &target_id, &job, None).await?;
            if client.json {
                output::json(&done);
            } else {
                eprintln!(
                    "{} restored to {at} into {} ({})",
                    field(&inst, "name"),
                    field(&target, "name"),
                    field(&done, "backup_name")
                );
            }
            Ok(())
        }
    }
}

async fn show_policy(client: &Client, inst: &Value) -> CliResult {
    let id = field(inst, "instance_id");
    let policy = client
        .call(Method::GET, &v3(client, &id, "/policy"), None, None)
        .await?
        .json;
    let info = client
        .call(Method::GET, &v3(client, &id, ""), None, None)
        .await?
        .json;
    if client.json {
        output::json(&json!({"policy": policy, "info": info}));
        return Ok(());
    }
    let storage = info["storage"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| info["storage"].as_u64())
        .unwrap_or(0);
    if policy["enabled"].as_bool() == Some(true) {
        println!(
            "{}: point-in-time recovery on, a base every {} min, kept {} day(s); {} stored",
            field(inst, "name"),
            field(&policy, "interval"),
            field(&policy, "keep_days"),
            output::bytes(storage)
        );
    } else {
        println!(
            "{}: point-in-time recovery off; {} stored",
            field(inst, "name"),
            output::bytes(storage)
        );
    }
    Ok(())
}

fn iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A range bound as the API takes it (ISO-8601, UTC, whole seconds).
fn bound(s: &str, b: Bound, now: OffsetDateTime, flag: &str) -> CliResult<String> {
    let compact = when::parse(s, b, now).map_err(|e| CliError::fail(format!("{flag}: {e}")))?;
    Ok(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &compact[0..4],
        &compact[4..6],
        &compact[6..8],
        &compact[8..10],
        &compact[10..12],
        &compact[12..14]
    ))
}

/// The instant to restore to: RFC 3339 as typed (the service reads
/// fractions and offsets), else a time `when` understands, to the second.
fn instant(s: &str) -> CliResult<String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        let ms = t.millisecond();
        let whole = iso(t);
        return Ok(if ms == 0 {
            whole
        } else {
            format!("{}.{ms:03}Z", whole.trim_end_matches('Z'))
        });
    }
    bound(s, Bound::Since, OffsetDateTime::now_utc(), "--to")
}

/// `2026-12-06T02:40:00Z`..`2026-12-06T03:12:41Z` → `32m41s`.
fn span(a: &str, b: &str) -> String {
    let p = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
    match (p(a), p(b)) {
        (Some(a), Some(b)) => output::duration((b - a).as_seconds_f64()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_keep_milliseconds_and_offsets_become_utc() {
        assert_eq!(
            instant("2026-12-06T10:15:30.250Z").unwrap(),
            "2026-12-06T10:15:30.250Z"
        );
        assert_eq!(
            instant("2026-12-06T18:15:30+08:00").unwrap(),
            "2026-12-06T10:15:30Z"
        );
        assert_eq!(
            instant("2026-12-06 10:15:30").unwrap(),
            "2026-12-06T10:15:30Z"
        );
        assert!(instant("yesterday-ish").is_err());
    }
}
