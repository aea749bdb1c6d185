//! `--wait`: follows a backup or restore record until it ends. On a
//! terminal (stderr) one line is redrawn in place: a bar, percent, bytes,
//! rate, elapsed time and ETA. Elsewhere (a log, CI) plain lines are
//! printed when the status changes and at most every
//! [`PLAIN_EVERY`] in between.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use super::client::{one_line, Client};
use super::output::{bytes, duration, job_error};
use super::{CliError, CliResult};

/// How often the record is read.
const POLL: Duration = Duration::from_secs(1);
/// Plain progress lines are at least this far apart (status changes
/// excepted).
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How long the service may stay unreachable while a job is followed.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Restore,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Restore => "restore",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            Kind::Backup => "backups",
            Kind::Restore => "restores",
        }
    }
}

/// Reads records of an instance to find one by id: first among the
/// newest, then, once its creation second is known, among the records of
/// that second only (a listing bounded by time costs the same however
/// many records the instance has).
pub struct Finder<'a> {
    client: &'a Client,
    kind: Kind,
    instance_id: String,
    id: String,
    second: Option<String>,
}

impl<'a> Finder<'a> {
    pub fn new(client: &'a Client, kind: Kind, instance_id: &str, id: &str) -> Self {
        Self {
            client,
            kind,
            instance_id: instance_id.to_owned(),
            id: id.to_owned(),
            second: None,
        }
    }

    /// The record, if the listing shows it.
    pub async fn find(&mut self) -> CliResult<Option<Value>> {
        let path = self.client.v2(&format!(
            "/instances/{}/{}",
            self.instance_id,
            self.kind.resource()
        ));
        let query = match &self.second {
            Some(s) => format!("begin_time={s}&end_time={s}&limit=1000"),
            None => "limit=100".to_owned(),
        };
        let answer = self
            .client
            .call(Method::GET, &path, Some(&query), None)
            .await?;
        let list_key = format!("{}_record_response", self.kind.noun());
        let id_key = format!("{}_id", self.kind.noun());
        let found = answer.json[&list_key].as_array().and_then(|items| {
            items
                .iter()
                .find(|r| r[&id_key].as_str() == Some(&self.id))
                .cloned()
        });
        match &found {
            Some(r) => self.second = r["created_at"].as_str().and_then(compact_second),
            None => self.second = None,
        }
        Ok(found)
    }
}

/// `2019-05-10T08:31:16.166Z` → `20190510083116`.
pub fn compact_second(iso: &str) -> Option<String> {
    let head = iso.get(..19)?;
    let digits: String = head.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 14).then_some(digits)
}

/// Follows a job until it ends; `Ok` with its record when it succeeded,
/// a job error (exit 1) with its code and reason when it failed.
/// `total` is the bytes a restore moves (its backup's size), for the rate.
pub async fn wait(
    client: &Client,
    kind: Kind,
    instance_id: &str,
    id: &str,
    total: Option<u64>,
) -> CliResult<Value> {
    let mut finder = Finder::new(client, kind, instance_id, id);
    let mut meter = Meter::new(kind, id);
    let mut trouble: Option<Instant> = None;
    let mut missing = 0;
    loop {
        let record = match finder.find().await {
            Ok(r) => {
                trouble = None;
                r
            }
            Err(e) if e.exit == 2 && trouble.is_none_or(|t| t.elapsed() < PATIENCE) => {
                if trouble.is_none() {
                    trouble = Some(Instant::now());
                    meter.note(&format!("{} (retrying for a minute)", e.message));
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => {
                meter.end();
                return Err(e);
            }
        };
        let Some(record) = record else {
            missing += 1;
            if missing > 30 {
                meter.end();
                return Err(CliError::fail(format!(
                    "the {} {id} does not appear in the instance's records",
                    kind.noun()
                )));
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        let status = record["status"].as_str().unwrap_or("unknown").to_owned();
        let pct: f64 = record["progress"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        let moved = match kind {
            Kind::Backup => record["size"].as_u64(),
            Kind::Restore => total.map(|t| (t as f64 * pct / 100.0) as u64),
        };
        let name_key = format!("{}_name", kind.noun());
        if let Some(name) = record[&name_key].as_str() {
            meter.label = one_line(name);
        }
        meter.update(&status, pct, moved);
        match status.as_str() {
            "waiting" | "backuping" | "restoring" => {}
            "succeed" => {
                meter.end();
                return Ok(record);
            }
            other => {
                meter.end();
                return Err(failure(kind, &meter.label, other, &record));
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The one line a failed job ends with: status, code, its meaning, reason.
fn failure(kind: Kind, label: &str, status: &str, record: &Value) -> CliError {
    let mut line = format!("{} {label} {status}", kind.noun());
    if let Some(code) = record["error_code"].as_str() {
        line.push_str(&format!(": {} ({})", one_line(code), job_error(code)));
    }
    if let Some(reason) = record["reason"].as_str().filter(|r| !r.is_empty()) {
        line.push_str(&format!("; reason: {}", one_line(reason)));
    }
    CliError::job(line)
}

/// Draws progress on stderr.
struct Meter {
    kind: Kind,
    label: String,
    tty: bool,
    started: Instant,
    /// When the job was first seen running (ETA counts from there).
    running_since: Option<(Instant, f64)>,
    last_status: String,
    last_line: Option<Instant>,
    last_pct: f64,
    samples: VecDeque<(Instant, u64)>,
    drawn: bool,
}

impl Meter {
    fn new(kind: Kind, id: &str) -> Self {
        Self {
            kind,
            label: id.to_owned(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            running_since: None,
            last_status: String::new(),
            last_line: None,
            last_pct: -1.0,
            samples: VecDeque::new(),
            drawn: false,
        }
    }

    fn update(&mut self, status: &str, pct: f64, moved: Option<u64>) {
        let now = Instant::now();
        if matches!(status, "backuping" | "restoring") && self.running_since.is_none() {
            self.running_since = Some((now, pct));
        }
        if let Some(b) = moved {
            self.samples.push_back((now, b));
            while self.samples.len() > 2
                && self
                    .samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(10))
            {
                self.samples.pop_front();
            }
        }
        let changed = status != self.last_status;
        let line = self.line(status, pct, moved, now);
        if self.tty {
            let bar = bar(pct, 20);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{} {bar} {line}", self.kind.noun());
            let _ = err.flush();
            self.drawn = true;
        } else {
            let due = self
                .last_line
                .is_none_or(|t| now.duration_since(t) >= PLAIN_EVERY);
            let terminal = !matches!(status, "waiting" | "backuping" | "restoring");
            if changed || terminal || (due && pct != self.last_pct) {
                eprintln!("{} {}: {line}", self.kind.noun(), self.label);
                self.last_line = Some(now);
                self.last_pct = pct;
            }
        }
        self.last_status = status.to_owned();
    }

    /// `backuping  45.30%  12.3 MiB  4.1 MiB/s  elapsed 3s  ETA 4s`.
    fn line(&self, status: &str, pct: f64, moved: Option<u64>, now: Instant) -> String {
        let mut parts = vec![status.to_owned(), format!("{pct:.2}%")];
        if let Some(b) = moved {
            parts.push(bytes(b));
            if let (Some((t0, b0)), Some((t1, b1))) = (self.samples.front(), self.samples.back()) {
                let dt = t1.duration_since(*t0).as_secs_f64();
                if dt > 0.5 && b1 >= b0 {
                    parts.push(format!("{}/s", bytes(((b1 - b0) as f64 / dt) as u64)));
                }
            }
        }
        parts.push(format!(
            "elapsed {}",
            duration(now.duration_since(self.started).as_secs_f64())
        ));
        if let Some((since, p0)) = self.running_since {
            let ran = now.duration_since(since).as_secs_f64();
            let done = pct - p0;
            if done > 0.0 && pct < 100.0 && ran > 0.0 {
                parts.push(format!("ETA {}", duration(ran * (100.0 - pct) / done)));
            }
        }
        parts.join("  ")
    }

    /// A message between updates (the service briefly unreachable).
    fn note(&mut self, msg: &str) {
        if self.tty && self.drawn {
            eprintln!();
            self.drawn = false;
        }
        eprintln!("{} {}: {msg}", self.kind.noun(), self.label);
    }

    /// Leaves the terminal line in place and moves below it.
    fn end(&mut self) {
        if self.tty && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `[#########-----------]`.
fn bar(pct: f64, width: usize) -> String {
    let filled = ((pct.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!(
        "[{}{}]",
        "#".repeat(filled),
        "-".repeat(width - filled.min(width))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_second_and_bar() {
        assert_eq!(
            compact_second("2019-05-10T08:31:16.166Z").as_deref(),
            Some("20190510083116")
        );
        assert_eq!(compact_second("garbage"), None);
        assert_eq!(bar(50.0, 10), "[#####-----]");
        assert_eq!(bar(150.0, 4), "[####]");
    }
}
