//! What the client prints: aligned tables, sizes, durations, JSON.

use serde_json::Value;

use super::client::one_line;

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            out.push_str(cell);
            if !last {
                let w = width.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a value as indented JSON.
pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A string field of a record, made safe to print; `-` when absent.
pub fn field(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => one_line(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "-".to_owned(),
    }
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `4s`, `3m05s`, `1h02m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `2019-05-10T08:31:16.166Z` shown as `2019-05-10 08:31:16`.
pub fn time(iso: &str) -> String {
    match iso.get(..19) {
        Some(t) if iso.len() >= 19 => t.replacen('T', " ", 1),
        _ => one_line(iso),
    }
}

/// The words for a job error code (`dcs.08.000x`).
pub fn job_error(code: &str) -> &'static str {
    match code {
        "dcs.08.0001" => "the backup/restore could not start, or the target cannot take it",
        "dcs.08.0002" => "the job ran out of time or went too slowly",
        "dcs.08.0003" => "the object store failed",
        "dcs.08.0004" => "no credentials for the object store",
        "dcs.08.0005" => "the object store's bucket could not be reached",
        "dcs.08.0006" => "the size of the data could not be determined",
        "dcs.08.0007" => "data failed to sync during the restore",
        "dcs.08.0008" => "the instance was busy",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let t = render_table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "cache".into()],
                vec!["12345".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\n1      cache\n12345  x\n");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(duration(4.2), "4s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(time("2019-05-10T08:31:16.166Z"), "2019-05-10 08:31:16");
    }
}
