//! Times as users type them, turned into the API's `yyyyMMddHHmmss` (UTC)
//! bounds: `2026-12-06`, `2026-12-06T10:00`, `2026-12-06 10:00:30`, RFC
//! 3339 with an offset (`2026-12-06T10:00:00+08:00`), the compact form
//! itself, or a span back from now (`90m`, `24h`, `7d`). A time without an
//! offset is UTC. A bound given to the day or minute covers all of it:
//! `--since 2026-12-06` starts at 00:00:00, `--until 2026-12-06` ends at
//! 23:59:59.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

/// Which end of a range a time bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Since,
    Until,
}

const COMPACT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");

/// The compact UTC form of what the user typed, or what is wrong with it.
pub fn parse(input: &str, bound: Bound, now: OffsetDateTime) -> Result<String, String> {
    let s = input.trim();
    let t = parse_time(s, bound, now).ok_or_else(|| {
        format!(
            "{input:?} is not a time; use e.g. 2026-12-06, 2026-12-06T10:00, \
             2026-12-06T10:00:00+08:00, 20261206100000 or 24h (times without an offset are UTC)"
        )
    })?;
    t.to_offset(time::UtcOffset::UTC)
        .format(COMPACT)
        .map_err(|_| format!("{input:?} is out of range"))
}

fn parse_time(s: &str, bound: Bound, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if let Some(ago) = parse_span(s) {
        return now.checked_sub(ago);
    }
    if s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()) {
        return PrimitiveDateTime::parse(s, COMPACT)
            .ok()
            .map(|t| t.assume_utc());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let s = s.replacen(' ', "T", 1);
    let s = s.strip_suffix('Z').unwrap_or(&s);
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        let t = match bound {
            Bound::Since => Time::MIDNIGHT,
            Bound::Until => Time::from_hms(23, 59, 59).ok()?,
        };
        return Some(PrimitiveDateTime::new(d, t).assume_utc());
    }
    if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        return Some(t.assume_utc());
    }
    if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ) {
        let t = t.assume_utc();
        return Some(match bound {
            Bound::Since => t,
            Bound::Until => t + Duration::seconds(59),
        });
    }
    None
}

/// `90s`, `15m`, `24h`, `7d`, `2w`.
fn parse_span(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    if !(0..=100 * 366 * 86_400).contains(&n) {
        return None;
    }
    Some(match unit {
        's' => Duration::seconds(n),
        'm' => Duration::minutes(n),
        'h' => Duration::hours(n),
        'd' => Duration::days(n),
        'w' => Duration::weeks(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn friendly_forms_become_compact_utc_bounds() {
        let now = datetime!(2026-12-10 12:00:00 UTC);
        let since = |s| parse(s, Bound::Since, now);
        let until = |s| parse(s, Bound::Until, now);
        assert_eq!(since("2026-12-06").as_deref(), Ok("20261206000000"));
        assert_eq!(until("2026-12-06").as_deref(), Ok("20261206235959"));
        assert_eq!(since("2026-12-06T10:00").as_deref(), Ok("20261206100000"));
        assert_eq!(until("2026-12-06 10:00").as_deref(), Ok("20261206100059"));
        assert_eq!(
            since("2026-12-06T10:00:30").as_deref(),
            Ok("20261206100030")
        );
        assert_eq!(
            since("2026-12-06T10:00:00+08:00").as_deref(),
            Ok("20261206020000")
        );
        assert_eq!(
            since("2026-12-06T10:00:00Z").as_deref(),
            Ok("20261206100000")
        );
        assert_eq!(since("20261206100000").as_deref(), Ok("20261206100000"));
        assert_eq!(since("24h").as_deref(), Ok("20261209120000"));
        assert_eq!(since("7d").as_deref(), Ok("20261203120000"));
        assert!(since("yesterday").is_err());
        assert!(since("2026-02-30").is_err());
        assert!(since("").is_err());
    }
}
