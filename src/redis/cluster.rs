//! Cluster key routing: `CRC16(key) mod 16384` with hash tags, as
//! `keyHashSlot` in Redis's `cluster.c` (CRC16-CCITT/XMODEM, `crc16.c`).

use crate::model::{NodeAddr, Topology};

pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key: only the part inside the first non-empty `{...}`
/// counts, if there is one.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// Which master serves each slot, from a discovered topology.
#[derive(Clone, Debug)]
pub struct SlotMap {
    owner: Vec<u16>,
    pub masters: Vec<NodeAddr>,
}

impl SlotMap {
    /// For a cluster: slot → shard index. Standalone topologies map every
    /// slot to their single master. Fails if a slot has no owner.
    pub fn new(t: &Topology) -> Result<Self, String> {
        let masters: Vec<NodeAddr> = t.shards.iter().map(|s| s.master.clone()).collect();
        if t.shards.iter().all(|s| s.slots.is_empty()) {
            return Ok(Self {
                owner: vec![0; SLOTS],
                masters,
            });
        }
        let mut owner = vec![u16::MAX; SLOTS];
        for (i, s) in t.shards.iter().enumerate() {
            for &(lo, hi) in &s.slots {
                for slot in lo..=hi.min(SLOTS as u16 - 1) {
                    owner[slot as usize] = i as u16;
                }
            }
        }
        if let Some(free) = owner.iter().position(|&o| o == u16::MAX) {
            return Err(format!(
                "slot {free} has no master; the cluster is not fully covered"
            ));
        }
        Ok(Self { owner, masters })
    }

    /// Index into `masters` of the node serving `key`.
    pub fn node_of(&self, key: &[u8]) -> usize {
        self.owner[key_slot(key) as usize] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_reference_values() {
        // From the Redis Cluster specification: crc16("123456789") = 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"{}foo"), crc16(b"{}foo") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
    }
}
