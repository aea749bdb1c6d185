//! `dcs-backup instance …`: adopt, list, show and remove instances, and
//! [`resolve`], which turns an id or a name into an instance for every
//! other command.

use std::io::{BufRead, Read};

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::client::{one_line, Client};
use super::output::{self, field};
use super::{CliError, CliResult, ClientOpts};

#[derive(Args, Debug)]
pub struct InstanceCommand {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: InstanceAction,
}

#[derive(Subcommand, Debug)]
pub enum InstanceAction {
    /// Adopt a running Redis or Valkey server; prints the new instance id.
    ///
    /// The service connects to the server, logs in, and discovers its
    /// topology (standalone, master with replicas, or cluster: give any node).
    #[command(after_help = "Example:\n  \
        echo \"$REDIS_PASSWORD\" | dcs-backup instance add shop-cache --address 10.0.0.5:6379 --password-stdin")]
    Add {
        /// A name of your choice, unique in the project.
        name: String,
        /// Where the server listens, HOST:PORT (a master, or any cluster node).
        #[arg(long, value_name = "HOST:PORT")]
        address: String,
        /// Read the server's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// ACL user to log in as (with --password-stdin).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Connect to the server over TLS.
        #[arg(long)]
        tls: bool,
        /// A free-text description.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the project's instances.
    #[command(
        after_help = "Example:\n  dcs-backup instance list\n  dcs-backup instance list --json"
    )]
    List,
    /// Show one instance: address, version, topology, reachability, policy.
    #[command(after_help = "Example:\n  dcs-backup instance show shop-cache")]
    Show {
        /// Instance id or name.
        instance: String,
    },
    /// Stop managing an instance. Its backup records and files stay, and
    /// can still be listed and deleted.
    #[command(after_help = "Example:\n  dcs-backup instance remove shop-cache")]
    Remove {
        /// Instance id or name.
        instance: String,
    },
}

pub async fn run(cmd: InstanceCommand) -> CliResult {
    let client = Client::new(&cmd.opts)?;
    match cmd.action {
        InstanceAction::Add {
            name,
            address,
            password_stdin,
            user,
            tls,
            description,
        } => {
            let (host, port) = split_address(&address)?;
            let mut body = json!({
                "name": name, "engine": "Redis", "private_ip": host, "port": port,
                "enable_ssl": tls,
            });
            if password_stdin {
                body["password"] = Value::from(read_password()?);
            }
            if let Some(u) = user {
                body["access_user"] = Value::from(u);
            }
            if let Some(d) = description {
                body["description"] = Value::from(d);
            }
            let answer = client
                .call(Method::POST, &client.v2("/instances"), None, Some(&body))
                .await?;
            if client.json {
                output::json(&answer.json);
                return Ok(());
            }
            let id = answer.json["instances"][0]["instance_id"]
                .as_str()
                .ok_or_else(|| CliError::fail("the service did not answer an instance id"))?;
            println!("{}", one_line(id));
            Ok(())
        }
        InstanceAction::List => list(&client).await,
        InstanceAction::Show { instance } => {
            let inst = resolve(&client, &instance).await?;
            if client.json {
                output::json(&inst);
            } else {
                show(&inst);
            }
            Ok(())
        }
        InstanceAction::Remove { instance } => {
            let inst = resolve(&client, &instance).await?;
            let id = field(&inst, "instance_id");
            client
                .call(
                    Method::DELETE,
                    &client.v2(&format!("/instances/{id}")),
                    None,
                    None,
                )
                .await?;
            if client.json {
                output::json(&json!({"instance_id": id, "removed": true}));
            } else {
                println!(
                    "removed instance {} ({id}); its backups stay listed and can still be deleted",
                    field(&inst, "name")
                );
            }
            Ok(())
        }
    }
}

/// `HOST:PORT`, `[v6]:PORT`.
fn split_address(address: &str) -> CliResult<(String, u16)> {
    let bad = || {
        CliError::fail(format!(
            "--address {address:?} must be HOST:PORT, e.g. 10.0.0.5:6379 or [fd00::5]:6379"
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    if host.is_empty() || host.contains(':') && !address.starts_with('[') {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The first line of standard input, without its line ending.
fn read_password() -> CliResult<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut line)
        .map_err(|e| {
            CliError::fail(format!("cannot read the password from standard input: {e}"))
        })?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    if pw.is_empty() {
        return Err(CliError::fail(
            "--password-stdin: standard input held no password",
        ));
    }
    Ok(pw)
}

/// The instance an id or a name designates (a name that several
/// instances share is an error naming them).
pub async fn resolve(client: &Client, given: &str) -> CliResult<Value> {
    let path = client.v2("/instances");
    if crate::model::InstanceId::parse(given).is_some() {
        let answer = client
            .call(
                Method::GET,
                &path,
                Some(&format!("instance_id={}", given.to_ascii_lowercase())),
                None,
            )
            .await?;
        if let Some(i) = answer.json["instances"].as_array().and_then(|a| a.first()) {
            return Ok(i.clone());
        }
    }
    let query = format!(
        "name={}&name_equal=true&limit=1000",
        percent_encoding::utf8_percent_encode(given, percent_encoding::NON_ALPHANUMERIC)
    );
    let answer = client.call(Method::GET, &path, Some(&query), None).await?;
    let found: Vec<&Value> = answer.json["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["name"].as_str() == Some(given))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(CliError::fail(format!(
            "no instance has the id or name {:?} (see `dcs-backup instance list`)",
            one_line(given)
        ))),
        many => Err(CliError::fail(format!(
            "{} instances are named {:?}: {}; give the id instead",
            many.len(),
            one_line(given),
            many.iter()
                .map(|i| field(i, "instance_id"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Every instance of the project, page by page.
async fn list(client: &Client) -> CliResult {
    let path = client.v2("/instances");
    let mut all: Vec<Value> = Vec::new();
    loop {
        let query = format!("offset={}&limit=1000", all.len());
        let answer = client.call(Method::GET, &path, Some(&query), None).await?;
        let page = answer.json["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total = answer.json["instance_num"].as_u64().unwrap_or(0);
        let empty = page.is_empty();
        all.extend(page);
        if empty || all.len() as u64 >= total || all.len() >= 1_000_000 {
            break;
        }
    }
    if client.json {
        output::json(&json!({"instance_num": all.len(), "instances": all}));
        return Ok(());
    }
    if all.is_empty() {
        println!(
            "no instances yet; adopt one with `dcs-backup instance add NAME --address HOST:PORT`"
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|i| {
            vec![
                field(i, "instance_id"),
                field(i, "name"),
                format!("{} {}", field(i, "engine"), field(i, "engine_version")),
                field(i, "cache_mode"),
                address(i),
                field(i, "status"),
                policy_summary(&i["instance_backup_policy"]["policy"]),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "ENGINE",
            "MODE",
            "ADDRESS",
            "STATUS",
            "AUTO BACKUPS",
        ],
        &rows,
    );
    Ok(())
}

fn address(i: &Value) -> String {
    let host = field(i, "ip");
    if host.contains(':') {
        format!("[{host}]:{}", field(i, "port"))
    } else {
        format!("{host}:{}", field(i, "port"))
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `Mon,Wed,Fri 02:00-03:00 GMT+08:00, keep 7 days`, or `off`.
pub fn policy_summary(p: &Value) -> String {
    if p["backup_type"].as_str() != Some("auto") {
        return "off".to_owned();
    }
    let plan = &p["periodical_backup_plan"];
    let days: Vec<&str> = plan["backup_at"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64())
                .filter_map(|d| DAYS.get((d as usize).wrapping_sub(1)).copied())
                .collect()
        })
        .unwrap_or_default();
    let mut s = format!("{} {}", days.join(","), field(plan, "begin_at"));
    if let Some(tz) = plan["timezone_offset"].as_str().filter(|t| !t.is_empty()) {
        s.push_str(&format!(" {}", one_line(tz)));
    } else {
        s.push_str(" UTC");
    }
    if let Some(d) = p["save_days"].as_u64() {
        s.push_str(&format!(", keep {d} day{}", if d == 1 { "" } else { "s" }));
    }
    s
}

fn show(i: &Value) {
    let mut rows = vec![
        ("id", field(i, "instance_id")),
        ("name", field(i, "name")),
        (
            "engine",
            format!("{} {}", field(i, "engine"), field(i, "engine_version")),
        ),
        ("mode", field(i, "cache_mode")),
        ("address", address(i)),
        ("tls", field(i, "enable_ssl")),
        ("user", field(i, "access_user")),
        ("status", field(i, "status")),
        ("created", output::time(&field(i, "created_at"))),
        (
            "auto backups",
            policy_summary(&i["instance_backup_policy"]["policy"]),
        ),
    ];
    if let Some(d) = i["description"].as_str().filter(|d| !d.is_empty()) {
        rows.push(("description", one_line(d)));
    }
    for (k, v) in rows {
        println!("{k:<13} {v}");
    }
    if let Some(shards) = i["shards"].as_array() {
        for (n, s) in shards.iter().enumerate() {
            let replicas: Vec<String> = s["replicas"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(one_line).collect())
                .unwrap_or_default();
            let slots: Vec<String> = s["slots"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(one_line).collect())
                .unwrap_or_default();
            let mut line = format!("master {}", field(s, "master"));
            if !replicas.is_empty() {
                line.push_str(&format!(", replicas {}", replicas.join(" ")));
            }
            if !slots.is_empty() {
                line.push_str(&format!(", slots {}", slots.join(" ")));
            }
            println!("{:<13} {line}", format!("shard {}", n + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("10.0.0.5:6379").unwrap(),
            ("10.0.0.5".into(), 6379)
        );
        assert_eq!(split_address("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert_eq!(
            split_address("cache.local:6380").unwrap(),
            ("cache.local".into(), 6380)
        );
        assert!(split_address("10.0.0.5").is_err());
        assert!(split_address("::1:6379").is_err());
        assert!(split_address("h:0").is_err());
    }

    #[test]
    fn policy_in_words() {
        let p = json!({"backup_type": "auto", "save_days": 7, "periodical_backup_plan":
            {"backup_at": [1, 3, 5], "begin_at": "02:00-03:00", "period_type": "weekly", "timezone_offset": "GMT+08:00"}});
        assert_eq!(
            policy_summary(&p),
            "Mon,Wed,Fri 02:00-03:00 GMT+08:00, keep 7 days"
        );
        assert_eq!(policy_summary(&json!({"backup_type": "manual"})), "off");
        assert_eq!(policy_summary(&Value::Null), "off");
    }
}
