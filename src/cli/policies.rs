//! `dcs-backup policy …`: an instance's automatic backups, through the
//! instance's `instance_backup_policy`.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::client::Client;
use super::instances::{policy_summary, resolve};
use super::output::{self, field};
use super::{CliError, CliResult, ClientOpts};

#[derive(Args, Debug)]
pub struct PolicyCommand {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: PolicyAction,
}

#[derive(Subcommand, Debug)]
pub enum PolicyAction {
    /// Show an instance's automatic backup policy.
    #[command(after_help = "Example:\n  dcs-backup policy show shop-cache")]
    Show {
        /// Instance id or name.
        instance: String,
    },
    /// Back an instance up automatically on some weekdays, in an hour-long
    /// window, keeping each automatic backup for some days.
    #[command(after_help = "Example:\n  \
        dcs-backup policy set shop-cache --days 1,3,5 --window 02:00-03:00 --keep-days 7 --timezone GMT+08:00\n  \
        (days: 1 = Monday … 7 = Sunday, or mon,wed,fri)")]
    Set {
        /// Instance id or name.
        instance: String,
        /// Weekdays: 1 (Monday) to 7 (Sunday), or names: 1,3,5 or mon,wed,fri.
        #[arg(long, value_name = "DAYS")]
        days: String,
        /// The hour the backup starts in: HH:00-HH+1:00 (or just HH:00).
        #[arg(long, value_name = "HH:00-HH:00")]
        window: String,
        /// Days each automatic backup is kept (1–7).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=7))]
        keep_days: u8,
        /// The window's time zone as an offset: GMT+08:00, UTC-5, +0530 (default UTC).
        #[arg(long, value_name = "TZ", allow_hyphen_values = true)]
        timezone: Option<String>,
    },
    /// Stop automatic backups (backups already taken keep their expiry).
    #[command(after_help = "Example:\n  dcs-backup policy off shop-cache")]
    Off {
        /// Instance id or name.
        instance: String,
    },
}

pub async fn run(cmd: PolicyCommand) -> CliResult {
    let client = Client::new(&cmd.opts)?;
    match cmd.action {
        PolicyAction::Show { instance } => {
            let inst = resolve(&client, &instance).await?;
            show(&client, &inst);
            Ok(())
        }
        PolicyAction::Set {
            instance,
            days,
            window,
            keep_days,
            timezone,
        } => {
            let days = parse_days(&days)?;
            let window = parse_window(&window)?;
            let mut plan = json!({"period_type": "weekly", "backup_at": days, "begin_at": window});
            if let Some(tz) = timezone {
                plan["timezone_offset"] = Value::from(tz);
            }
            let policy = json!({"backup_type": "auto", "save_days": keep_days, "periodical_backup_plan": plan});
            let inst = modify(&client, &instance, policy).await?;
            show(&client, &inst);
            Ok(())
        }
        PolicyAction::Off { instance } => {
            let inst = modify(&client, &instance, json!({"backup_type": "manual"})).await?;
            show(&client, &inst);
            Ok(())
        }
    }
}

/// Sets the policy, then reads the instance back as the service stored it.
async fn modify(client: &Client, instance: &str, policy: Value) -> CliResult<Value> {
    let inst = resolve(client, instance).await?;
    let path = client.v2(&format!("/instances/{}", field(&inst, "instance_id")));
    client
        .call(
            Method::PUT,
            &path,
            None,
            Some(&json!({ "instance_backup_policy": policy })),
        )
        .await?;
    let answer = client.call(Method::GET, &path, None, None).await?;
    Ok(answer.json)
}

fn show(client: &Client, inst: &Value) {
    let policy = &inst["instance_backup_policy"];
    if client.json {
        output::json(policy);
        return;
    }
    println!(
        "{}: automatic backups {}",
        field(inst, "name"),
        match policy_summary(&policy["policy"]).as_str() {
            "off" => "off".to_owned(),
            on => format!("on, {on}"),
        }
    );
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// `1,3,5` or `mon,wed,fri` → `[1, 3, 5]`.
fn parse_days(s: &str) -> CliResult<Vec<u8>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.to_ascii_lowercase();
        let day = match lower.parse::<u8>() {
            Ok(d @ 1..=7) => Some(d),
            Ok(_) => None,
            Err(_) => DAY_NAMES
                .iter()
                .position(|(short, long)| lower == *short || lower == *long)
                .map(|i| i as u8 + 1),
        };
        let day = day.ok_or_else(|| {
            CliError::fail(format!(
                "--days: {part:?} is not a weekday; use 1 (Monday) to 7 (Sunday) or mon…sun"
            ))
        })?;
        if !out.contains(&day) {
            out.push(day);
        }
    }
    if out.is_empty() {
        return Err(CliError::fail(
            "--days: give at least one weekday, e.g. 1,3,5",
        ));
    }
    out.sort_unstable();
    Ok(out)
}

/// `02:00-03:00`, or `02:00` meaning the hour from there.
fn parse_window(s: &str) -> CliResult<String> {
    let bad = || {
        CliError::fail(format!(
            "--window {s:?}: give a whole hour as HH:00-HH:00, e.g. 02:00-03:00"
        ))
    };
    let hour = |x: &str| -> Option<u8> {
        let (h, m) = x.trim().split_once(':')?;
        (m == "00" && h.len() <= 2)
            .then(|| h.parse().ok())
            .flatten()
            .filter(|h| *h < 24)
    };
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (hour(a).ok_or_else(bad)?, hour(b).ok_or_else(bad)?),
        None => {
            let a = hour(s).ok_or_else(bad)?;
            (a, (a + 1) % 24)
        }
    };
    if end != (start + 1) % 24 {
        return Err(CliError::fail(format!(
            "--window {s:?}: the window is one hour long, e.g. {start:02}:00-{:02}:00",
            (start + 1) % 24
        )));
    }
    Ok(format!("{start:02}:00-{end:02}:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_windows() {
        assert_eq!(parse_days("1,3,5").unwrap(), vec![1, 3, 5]);
        assert_eq!(parse_days("fri, mon,Wednesday").unwrap(), vec![1, 3, 5]);
        assert!(parse_days("0").is_err());
        assert!(parse_days("8").is_err());
        assert!(parse_days("funday").is_err());
        assert!(parse_days("").is_err());
        assert_eq!(parse_window("02:00-03:00").unwrap(), "02:00-03:00");
        assert_eq!(parse_window("2:00").unwrap(), "02:00-03:00");
        assert_eq!(parse_window("23:00-00:00").unwrap(), "23:00-00:00");
        assert!(parse_window("02:00-04:00").is_err());
        assert!(parse_window("02:30-03:30").is_err());
        assert!(parse_window("24:00").is_err());
    }
}
