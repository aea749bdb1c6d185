//! Restorable periods, derived from the catalog's bases, segments and
//! links; nothing else says what is restorable.
//!
//! The segments given may be runs (`Catalog::pitr_runs`: consecutive
//! segments folded into one); the chains and periods are the same.
//!
//! Per shard, a *chain* is a base followed by segments that continue it
//! without a gap: the first one holds the base's offset (it starts at it,
//! or, for a base taken over another link, contains it), each next one
//! starts where the previous ends. A chain covers `[base.ready_at, end]`,
//! `end` being the last segment's last receipt time, or the link's
//! `covered_at` when the live link stands exactly at the chain's end. A
//! shard's periods are the union of its chains'; an instance's, the
//! intersection of its shards' (a cluster is restorable at T only if every
//! shard is).

use crate::catalog::{BaseRow, LinkRow, SegmentRow};
use crate::model::Millis;

/// After a resumed segment's first byte, the time its backlog of writes
/// is given to arrive.
pub const RESUME_MARGIN: Millis = 1000;

/// A base and the segments that continue it.
#[derive(Clone, Debug)]
pub struct Chain<'a> {
    pub base: &'a BaseRow,
    pub segments: Vec<&'a SegmentRow>,
    pub end_at: Millis,
    /// The instants it can restore to.
    pub spans: Vec<(Millis, Millis)>,
}

impl Chain<'_> {
    /// Whether a restore to `t` can use this chain.
    pub fn covers(&self, t: Millis) -> bool {
        self.spans.iter().any(|(a, b)| *a <= t && t <= *b)
    }
}

/// Every chain of `shard`, in the order of their bases.
pub fn chains<'a>(
    shard: &str,
    bases: &'a [BaseRow],
    segments: &'a [SegmentRow],
    links: &[LinkRow],
) -> Vec<Chain<'a>> {
    let mut segs: Vec<&SegmentRow> = segments.iter().filter(|s| s.shard == shard).collect();
    segs.sort_by_key(|s| (s.first_at, s.start_offset));
    let link = links.iter().find(|l| l.shard == shard);
    let mut out = Vec::new();
    for base in bases.iter().filter(|b| b.shard == shard) {
        let o = base.repl_offset;
        let first = segs
            .iter()
            .find(|s| s.repl_id == base.repl_id && s.start_offset == o)
            .or_else(|| {
                segs.iter()
                    .find(|s| s.repl_id == base.repl_id && s.start_offset < o && o < s.end_offset)
            });
        let mut chain = Vec::new();
        if let Some(first) = first {
            chain.push(*first);
            let mut cur = *first;
            for s in segs.iter().filter(|s| s.first_at >= first.first_at) {
                if s.start_offset == cur.end_offset && s.first_at >= cur.first_at {
                    chain.push(*s);
                    cur = s;
                }
            }
        }
        let (end_offset, end_id, mut end_at) = match chain.last() {
            Some(s) => (
                s.end_offset,
                s.repl_id.as_str(),
                s.last_at.max(s.covered_until),
            ),
            None => (o, base.repl_id.as_str(), base.taken_at),
        };
        if let Some(l) = link {
            if l.end_offset == end_offset && l.repl_id == end_id {
                end_at = end_at.max(l.covered_at);
            }
        }
        let mut spans = Vec::new();
        let mut from = base.ready_at;
        let mut prev_end = base.taken_at;
        for s in &chain {
            if s.resumed {
                spans.push((from, prev_end));
                from = from.max(s.first_at + RESUME_MARGIN);
            }
            prev_end = s.last_at.max(s.covered_until);
        }
        spans.push((from, end_at));
        spans.retain(|(a, b)| a <= b);
        out.push(Chain {
            base,
            segments: chain,
            end_at,
            spans,
        });
    }
    out
}

/// Merges intervals that overlap or touch.
fn union(mut v: Vec<(Millis, Millis)>) -> Vec<(Millis, Millis)> {
    v.retain(|(a, b)| a <= b);
    v.sort_unstable();
    let mut out: Vec<(Millis, Millis)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn intersect(a: &[(Millis, Millis)], b: &[(Millis, Millis)]) -> Vec<(Millis, Millis)> {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    union(out)
}

/// The shards an instance's history has: those with a live link, else
/// those with a base.
pub fn shards(bases: &[BaseRow], links: &[LinkRow]) -> Vec<String> {
    let mut v: Vec<String> = if links.is_empty() {
        bases.iter().map(|b| b.shard.clone()).collect()
    } else {
        links.iter().map(|l| l.shard.clone()).collect()
    };
    v.sort();
    v.dedup();
    v
}

/// The instance's restorable periods, oldest first.
pub fn periods(
    bases: &[BaseRow],
    segments: &[SegmentRow],
    links: &[LinkRow],
) -> Vec<(Millis, Millis)> {
    let mut acc: Option<Vec<(Millis, Millis)>> = None;
    for shard in shards(bases, links) {
        let own = union(
            chains(&shard, bases, segments, links)
                .iter()
                .flat_map(|c| c.spans.iter().copied())
                .collect(),
        );
        acc = Some(match acc {
            None => own,
            Some(prev) => intersect(&prev, &own),
        });
    }
    acc.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceId;

    fn base(shard: &str, off: i64, at: i64) -> BaseRow {
        BaseRow {
            id: format!("b{off}"),
            instance_id: InstanceId::from_stored("i".into()),
            shard: shard.into(),
            prefix: String::new(),
            file_name: String::new(),
            repl_id: "r".into(),
            repl_offset: off,
            taken_at: at,
            ready_at: at + 1,
            size: 0,
            manifest: String::new(),
            from_backup: false,
        }
    }

    fn seg(shard: &str, id: &str, a: i64, b: i64, t0: i64, t1: i64) -> SegmentRow {
        SegmentRow {
            instance_id: InstanceId::from_stored("i".into()),
            shard: shard.into(),
            repl_id: id.into(),
            start_offset: a,
            end_offset: b,
            first_at: t0,
            last_at: t1,
            start_db: 0,
            end_db: 0,
            data_len: b - a,
            size: b - a,
            blake3: String::new(),
            object_key: String::new(),
            resumed: false,
            covered_until: t1,
        }
    }

    #[test]
    fn gaps_split_periods_and_failover_ids_continue() {
        let bases = vec![base("s", 100, 10), base("s", 500, 60)];
        let segs = vec![
            seg("s", "r", 100, 200, 12, 20),
            seg("s", "r2", 200, 300, 21, 30), // +CONTINUE <newid>
            // gap: 300..400 never captured; a full sync at 500 starts again
            seg("s", "r", 500, 600, 62, 70),
        ];
        let links = vec![LinkRow {
            shard: "s".into(),
            repl_id: "r".into(),
            end_offset: 600,
            covered_at: 90,
        }];
        assert_eq!(periods(&bases, &segs, &links), vec![(11, 30), (61, 90)]);
        // A base taken over another link, inside a segment, joins the chain.
        let mut mid = base("s", 150, 15);
        mid.ready_at = 25;
        let bases2 = vec![mid];
        assert_eq!(periods(&bases2, &segs, &links), vec![(25, 30)]);
        // A resume: the same history, but the time no link was up is not
        // restorable.
        let mut segs3 = segs.clone();
        segs3[1].resumed = true;
        segs3[1].first_at = 2000;
        segs3[1].last_at = 3000;
        assert_eq!(
            periods(&bases[..1], &segs3, &[]),
            vec![(11, 20), (3000, 3000)]
        );
    }

    #[test]
    fn a_cluster_is_restorable_where_every_shard_is() {
        let bases = vec![base("a", 0, 0), base("b", 0, 5)];
        let segs = vec![seg("a", "r", 0, 10, 1, 50), seg("b", "r", 0, 10, 6, 40)];
        assert_eq!(periods(&bases, &segs, &[]), vec![(6, 40)]);
    }
}
