//! The log segment format: the stream bytes as the master sent them,
//! followed by a time index and a fixed trailer.
//!
//! ```text
//! data      stream bytes [start_offset, end_offset), whole commands only,
//!           never ending inside MULTI … EXEC
//! points    n × (i64 LE receipt ms, u64 LE end of the last whole command
//!           received by then, relative to the data's first byte)
//! trailer   u64 LE n, u64 LE data length, b"DCSPITR1"
//! ```
//! A point is added whenever a read completes commands outside a
//! transaction, so a restore to T replays the data up to the last point
//! whose time is ≤ T. The object's BLAKE3 is in its catalog row; the row
//! is inserted after the object is stored, so a segment is visible only
//! when complete.

pub const MAGIC: &[u8; 8] = b"DCSPITR1";
const TRAILER: usize = 24;

/// One index point: everything up to `end` (relative) was received at or
/// before `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub at: i64,
    pub end: u64,
}

/// Appends the index and trailer for `data_len` bytes of data.
pub fn encode_index(out: &mut Vec<u8>, points: &[Point], data_len: u64) {
    for p in points {
        out.extend_from_slice(&p.at.to_le_bytes());
        out.extend_from_slice(&p.end.to_le_bytes());
    }
    out.extend_from_slice(&(points.len() as u64).to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(MAGIC);
}

/// Splits a whole segment object into its data and index, checking the
/// trailer against the length its catalog row says.
pub fn decode(object: &[u8], data_len: u64) -> Result<(&[u8], Vec<Point>), String> {
    if object.len() < TRAILER {
        return Err("segment shorter than its trailer".into());
    }
    let (body, trailer) = object.split_at(object.len() - TRAILER);
    if &trailer[16..] != MAGIC {
        return Err("segment trailer has no magic".into());
    }
    let n = u64::from_le_bytes(trailer[..8].try_into().map_err(|_| "trailer")?);
    let len = u64::from_le_bytes(trailer[8..16].try_into().map_err(|_| "trailer")?);
    if len != data_len {
        return Err(format!(
            "segment holds {len} data bytes, its record says {data_len}"
        ));
    }
    let index_len = n
        .checked_mul(16)
        .filter(|i| i.checked_add(len) == Some(body.len() as u64))
        .ok_or("segment index length does not match its size")?;
    let (data, index) = body.split_at(len as usize);
    debug_assert_eq!(index.len() as u64, index_len);
    let mut points = Vec::with_capacity(n as usize);
    let mut last_end = 0;
    for p in index.chunks_exact(16) {
        let at = i64::from_le_bytes(p[..8].try_into().map_err(|_| "point")?);
        let end = u64::from_le_bytes(p[8..].try_into().map_err(|_| "point")?);
        if end > len || end < last_end {
            return Err("segment index point out of order".into());
        }
        last_end = end;
        points.push(Point { at, end });
    }
    Ok((data, points))
}

/// How many data bytes a restore to `t` replays: up to the last point at
/// or before `t` (0 when none is).
pub fn stop_within(points: &[Point], t: i64) -> u64 {
    points
        .iter()
        .take_while(|p| p.at <= t)
        .last()
        .map(|p| p.end)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_finds_the_stop() {
        let data = b"0123456789".to_vec();
        let points = [Point { at: 10, end: 4 }, Point { at: 12, end: 10 }];
        let mut obj = data.clone();
        encode_index(&mut obj, &points, 10);
        let (d, p) = decode(&obj, 10).unwrap();
        assert_eq!(d, &data[..]);
        assert_eq!(p, points);
        assert_eq!(stop_within(&p, 9), 0);
        assert_eq!(stop_within(&p, 11), 4);
        assert_eq!(stop_within(&p, 12), 10);
        assert!(decode(&obj, 9).is_err());
        assert!(decode(&obj[1..], 10).is_err());
        let mut bad = obj.clone();
        let n = bad.len();
        bad[n - 1] = b'X';
        assert!(decode(&bad, 10).is_err());
    }
}
