//! Prometheus metrics: the counters this process keeps, and the text
//! exposition format (version 0.0.4) they are written in.
//!
//! Counters and the running-jobs gauge are process-local: each replica
//! counts the jobs it ran and the windows it recorded, so Prometheus sums
//! them across replicas (`sum without (instance) (…)`). What describes
//! the shared state (queued jobs, last success and failure per instance,
//! policy periods) is read from the catalog at scrape time by `api::metrics`
//! and is the same on every replica.
//!
//! The encoder is written here rather than taken from a crate: the format
//! is a few lines of text per series, most families are built fresh from
//! the catalog at each scrape (which registry-based crates model poorly),
//! and it keeps the dependency list as it is.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{JobKind, VerificationStatus};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the job duration histogram: jobs take from
/// about a second (a small instance) to hours (the default deadline is 6 h).
pub const DURATION_BUCKETS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0,
];

/// Which way job bytes went, for `dcs_backup_bytes_total{direction}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Written to the store by a backup.
    Stored,
    /// Read from the store and put into a target by a restore.
    Restored,
}

/// How a planned window ended, for `dcs_backup_schedule_windows_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowOutcome {
    /// Its automatic backup was queued.
    Started,
    /// It closed while the instance stayed busy (a failed `dcs.08.0008` record).
    Missed,
    /// It passed while no node was running.
    Skipped,
}

impl WindowOutcome {
    const ALL: [Self; 3] = [Self::Started, Self::Missed, Self::Skipped];

    fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Missed => "missed",
            Self::Skipped => "skipped",
        }
    }
}

const KINDS: [JobKind; 3] = [JobKind::Backup, JobKind::Restore, JobKind::Verification];

fn kind_index(k: JobKind) -> usize {
    match k {
        JobKind::Backup => 0,
        JobKind::Restore => 1,
        JobKind::Verification => 2,
    }
}

/// The final statuses of a test restore, for `dcs_backup_verifications_total`.
const VERIFICATION_STATUSES: [VerificationStatus; 3] = [
    VerificationStatus::Passed,
    VerificationStatus::Failed,
    VerificationStatus::Skipped,
];

/// A histogram of durations: counts per bucket (not cumulative; the
/// encoder sums them), the total count and the sum in microseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// What this process counts as it runs jobs and the scheduler.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[kind][succeeded as usize]`.
    jobs: [[AtomicU64; 2]; 3],
    durations: [Histogram; 3],
    /// `[stored, restored]`.
    bytes: [AtomicU64; 2],
    running: [AtomicI64; 3],
    windows: [AtomicU64; 3],
    /// Test restores recorded, by [`VERIFICATION_STATUSES`].
    verifications: [AtomicU64; 3],
}

impl Metrics {
    /// Counts a job as running until the guard is dropped.
    pub fn running(&self, kind: JobKind) -> Running<'_> {
        self.running[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
        Running(&self.running[kind_index(kind)])
    }

    /// Counts a job this process finished and recorded.
    pub fn job_finished(&self, kind: JobKind, succeeded: bool, took: Duration) {
        let k = kind_index(kind);
        self.jobs[k][usize::from(succeeded)].fetch_add(1, Ordering::Relaxed);
        self.durations[k].observe(took);
    }

    pub fn bytes(&self, direction: Direction, n: u64) {
        let i = match direction {
            Direction::Stored => 0,
            Direction::Restored => 1,
        };
        self.bytes[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a test restore this process recorded with a final status.
    pub fn verification(&self, status: VerificationStatus) {
        if let Some(i) = VERIFICATION_STATUSES.iter().position(|s| *s == status) {
            self.verifications[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn window(&self, outcome: WindowOutcome) {
        self.windows[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes every family this process keeps.
    pub fn encode(&self, out: &mut Exposition) {
        out.family(
            "dcs_backup_jobs_total",
            "Backup, restore and verification jobs this process finished, by outcome (process-local: sum across replicas).",
            Type::Counter,
        );
        for kind in KINDS {
            for (ok, status) in [(1, "succeed"), (0, "failed")] {
                let n = self.jobs[kind_index(kind)][ok].load(Ordering::Relaxed);
                out.sample(
                    "dcs_backup_jobs_total",
                    &[("kind", kind.as_str()), ("status", status)],
                    n as f64,
                );
            }
        }
        out.family(
            "dcs_backup_job_duration_seconds",
            "Time from claim to recorded outcome of the jobs this process finished (process-local).",
            Type::Histogram,
        );
        for kind in KINDS {
            let h = &self.durations[kind_index(kind)];
            let mut cumulative = 0u64;
            for (le, b) in DURATION_BUCKETS.iter().zip(&h.buckets) {
                cumulative += b.load(Ordering::Relaxed);
                out.sample(
                    "dcs_backup_job_duration_seconds_bucket",
                    &[("kind", kind.as_str()), ("le", &format_value(*le))],
                    cumulative as f64,
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            out.sample(
                "dcs_backup_job_duration_seconds_bucket",
                &[("kind", kind.as_str()), ("le", "+Inf")],
                count as f64,
            );
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.sample(
                "dcs_backup_job_duration_seconds_sum",
                &[("kind", kind.as_str())],
                sum,
            );
            out.sample(
                "dcs_backup_job_duration_seconds_count",
                &[("kind", kind.as_str())],
                count as f64,
            );
        }
        out.family(
            "dcs_backup_bytes_total",
            "Bytes of succeeded jobs of this process: stored by backups, restored into targets (process-local).",
            Type::Counter,
        );
        for (i, direction) in ["stored", "restored"].into_iter().enumerate() {
            out.sample(
                "dcs_backup_bytes_total",
                &[("direction", direction)],
                self.bytes[i].load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "dcs_backup_jobs_running",
            "Jobs this process is running now (process-local: sum across replicas).",
            Type::Gauge,
        );
        for kind in KINDS {
            let n = self.running[kind_index(kind)].load(Ordering::Relaxed);
            out.sample(
                "dcs_backup_jobs_running",
                &[("kind", kind.as_str())],
                n as f64,
            );
        }
        out.family(
            "dcs_backup_schedule_windows_total",
            "Planned automatic backup windows this process recorded, by outcome (process-local: sum across replicas).",
            Type::Counter,
        );
        for w in WindowOutcome::ALL {
            out.sample(
                "dcs_backup_schedule_windows_total",
                &[("outcome", w.as_str())],
                self.windows[w as usize].load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "dcs_backup_verifications_total",
            "Test restores this process recorded, by status: passed, failed (the backup is no longer trusted), skipped (not tested) (process-local).",
            Type::Counter,
        );
        for (i, status) in VERIFICATION_STATUSES.into_iter().enumerate() {
            out.sample(
                "dcs_backup_verifications_total",
                &[("status", status.as_str())],
                self.verifications[i].load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "dcs_backup_build_info",
            "The running version of dcs-backup; always 1.",
            Type::Gauge,
        );
        out.sample(
            "dcs_backup_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
    }
}

/// Keeps a job counted in `dcs_backup_jobs_running` while it lives.
pub struct Running<'a>(&'a AtomicI64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A metric family's type.
#[derive(Clone, Copy, Debug)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// A scrape's text, in the exposition format: each family's `# HELP` and
/// `# TYPE` lines, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Type) {
        let kind = match kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// A sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN`, or a
/// decimal number).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// `\` and line feed escaped, as HELP text needs.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `\`, `"` and line feed escaped, as label values need.
fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_total", "a \\ b\nc \"q\"", Type::Counter);
        e.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "")], 3.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"\"} 3\n"
        );
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1_718_000_000.5), "1718000000.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        let mut e = Exposition::new();
        e.sample("up", &[], 1.0);
        assert_eq!(e.finish(), "up 1\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let m = Metrics::default();
        m.job_finished(JobKind::Backup, true, Duration::from_millis(400));
        m.job_finished(JobKind::Backup, false, Duration::from_secs(45));
        m.job_finished(JobKind::Backup, true, Duration::from_secs(90_000));
        let mut e = Exposition::new();
        m.encode(&mut e);
        let text = e.finish();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let b = "dcs_backup_job_duration_seconds_bucket{kind=\"backup\",";
        assert_eq!(line(&format!("{b}le=\"1\"}}")), "1");
        assert_eq!(line(&format!("{b}le=\"30\"}}")), "1");
        assert_eq!(line(&format!("{b}le=\"60\"}}")), "2");
        assert_eq!(line(&format!("{b}le=\"21600\"}}")), "2");
        assert_eq!(line(&format!("{b}le=\"+Inf\"}}")), "3");
        assert_eq!(
            line("dcs_backup_job_duration_seconds_count{kind=\"backup\"}"),
            "3"
        );
        assert_eq!(
            line("dcs_backup_job_duration_seconds_sum{kind=\"backup\"}"),
            "90045.4"
        );
        assert_eq!(
            line("dcs_backup_jobs_total{kind=\"backup\",status=\"succeed\"}"),
            "2"
        );
        assert_eq!(
            line("dcs_backup_jobs_total{kind=\"backup\",status=\"failed\"}"),
            "1"
        );
        assert_eq!(
            line("dcs_backup_job_duration_seconds_count{kind=\"restore\"}"),
            "0"
        );
    }

    #[test]
    fn running_jobs_are_counted_while_their_guard_lives() {
        let m = Metrics::default();
        let g = m.running(JobKind::Restore);
        let mut e = Exposition::new();
        m.encode(&mut e);
        assert!(e
            .finish()
            .contains("dcs_backup_jobs_running{kind=\"restore\"} 1\n"));
        drop(g);
        let mut e = Exposition::new();
        m.encode(&mut e);
        assert!(e
            .finish()
            .contains("dcs_backup_jobs_running{kind=\"restore\"} 0\n"));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let m = Metrics::default();
        let mut e = Exposition::new();
        m.encode(&mut e);
        let text = e.finish();
        let mut typed = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                    .unwrap_or(name);
                assert!(typed.contains(base), "{name} has no TYPE before it");
            }
        }
    }
}
