//! Sparse indexes of one segment, kept in memory and written to disk when the segment is
//! sealed.
//!
//! ```text
//! .index      entries of 8 bytes:  relative offset u32 BE | file position u32 BE
//! .timeindex  entries of 12 bytes: max timestamp so far i64 BE | relative offset u32 BE
//! ```
//! An entry is added when at least `interval_bytes` were appended since the last one (and
//! always for the first batch), so a lookup scans at most about `interval_bytes` of headers.
//! Time entries only grow: each records the largest timestamp seen so far in the segment.
//! Files are written whole to a `.tmp` and renamed, so a crash leaves either the old or the
//! new file; a file that fails the checks in `load` is rebuilt from the log.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Offset index entry: a batch whose base offset is `base + rel` starts at `pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel: u32,
    pub pos: u32,
}

/// Time index entry: batches up to relative offset `rel` have timestamps <= `ts`, and the
/// batch at `rel` is the first one to reach `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
}

/// Both sparse indexes of a segment.
#[derive(Debug, Clone, Default)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    pub max_timestamp: Option<i64>,
}

impl SegmentIndex {
    /// Records a batch appended at `pos` with base offset `base + rel`.
    pub fn on_append(&mut self, rel: u32, pos: u32, len: u64, max_ts: i64, interval: u64) {
        if self.offsets.is_empty() || self.bytes_since_offset_entry >= interval {
            self.offsets.push(OffsetEntry { rel, pos });
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += len;
        let grows = self.max_timestamp.is_none_or(|m| max_ts > m);
        if grows {
            self.max_timestamp = Some(max_ts);
            if self.times.is_empty() || self.bytes_since_time_entry >= interval {
                self.times.push(TimeEntry { ts: max_ts, rel });
                self.bytes_since_time_entry = 0;
            }
        }
        self.bytes_since_time_entry += len;
    }

    /// Makes the last time entry carry the segment's max timestamp, so that retention by
    /// time and timestamp lookups of a sealed segment see its newest timestamp.
    pub fn seal_times(&mut self, last_rel: u32) {
        if let Some(max) = self.max_timestamp
            && self.times.last().is_none_or(|t| t.ts < max)
        {
            self.times.push(TimeEntry {
                ts: max,
                rel: last_rel,
            });
        }
    }

    /// The last offset entry at or before relative offset `rel`.
    pub fn lookup(&self, rel: u32) -> Option<OffsetEntry> {
        let i = self.offsets.partition_point(|e| e.rel <= rel);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The relative offset to start a timestamp scan from: the last entry whose timestamp
    /// is below `ts` (every batch before it is older than `ts`).
    pub fn time_lookup(&self, ts: i64) -> Option<u32> {
        let i = self.times.partition_point(|e| e.ts < ts);
        i.checked_sub(1).map(|i| self.times[i].rel)
    }

    /// Writes both files (tmp + rename) and fsyncs them.
    pub fn write_files(&self, index_path: &Path, time_path: &Path) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(self.offsets.len() * 8);
        for e in &self.offsets {
            buf.extend_from_slice(&e.rel.to_be_bytes());
            buf.extend_from_slice(&e.pos.to_be_bytes());
        }
        write_atomic(index_path, &buf)?;
        let mut buf = Vec::with_capacity(self.times.len() * 12);
        for e in &self.times {
            buf.extend_from_slice(&e.ts.to_be_bytes());
            buf.extend_from_slice(&e.rel.to_be_bytes());
        }
        write_atomic(time_path, &buf)
    }

    /// Loads both files of a sealed segment of `file_len` bytes. `None` when either is
    /// missing or inconsistent (not a whole number of entries, not increasing, a position
    /// past the end of the log, no entry at position 0 of a non-empty log).
    pub fn load(index_path: &Path, time_path: &Path, file_len: u64) -> Option<SegmentIndex> {
        let raw = fs::read(index_path).ok()?;
        if raw.len() % 8 != 0 {
            return None;
        }
        let offsets: Vec<OffsetEntry> = raw
            .chunks_exact(8)
            .map(|c| OffsetEntry {
                rel: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                pos: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let ordered = offsets
            .windows(2)
            .all(|w| w[0].rel < w[1].rel && w[0].pos < w[1].pos);
        let in_file = offsets.iter().all(|e| (e.pos as u64) < file_len);
        let starts_at_zero = file_len == 0 || offsets.first().is_some_and(|e| e.pos == 0);
        if !ordered || !in_file || !starts_at_zero {
            return None;
        }
        let raw = fs::read(time_path).ok()?;
        if raw.len() % 12 != 0 {
            return None;
        }
        let times: Vec<TimeEntry> = raw
            .chunks_exact(12)
            .map(|c| TimeEntry {
                ts: i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                rel: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
            })
            .collect();
        if !times
            .windows(2)
            .all(|w| w[0].ts < w[1].ts && w[0].rel <= w[1].rel)
        {
            return None;
        }
        Some(SegmentIndex {
            max_timestamp: times.last().map(|t| t.ts),
            offsets,
            times,
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
        })
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("idx")
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_follow_the_interval_and_lookups_find_the_floor() {
        let mut ix = SegmentIndex::default();
        for i in 0..10u32 {
            ix.on_append(i * 2, i * 100, 100, i as i64 * 10, 250);
        }
        // First batch, then one after every >= 250 bytes: positions 0, 300, 600, 900.
        let pos: Vec<u32> = ix.offsets.iter().map(|e| e.pos).collect();
        assert_eq!(pos, vec![0, 300, 600, 900]);
        assert_eq!(ix.lookup(7).map(|e| e.rel), Some(6));
        assert_eq!(ix.lookup(0).map(|e| e.rel), Some(0));
        // Time entries at (0, rel 0), (30, rel 6), (60, rel 12), (90, rel 18).
        assert_eq!(ix.time_lookup(45), Some(6));
        assert_eq!(ix.time_lookup(0), None);
        ix.seal_times(18);
        assert_eq!(ix.times.last().map(|t| t.ts), Some(90));
    }

    #[test]
    fn files_round_trip_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ip, tp) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let mut ix = SegmentIndex::default();
        for i in 0..5u32 {
            ix.on_append(i, i * 10, 10, 100 + i as i64, 1);
        }
        ix.write_files(&ip, &tp).expect("write");
        let back = SegmentIndex::load(&ip, &tp, 50).expect("load");
        assert_eq!(back.offsets, ix.offsets);
        assert_eq!(back.times, ix.times);
        // A position past the end of the log means the index does not belong to it.
        assert!(SegmentIndex::load(&ip, &tp, 30).is_none());
        fs::write(&ip, [0u8; 7]).expect("write");
        assert!(SegmentIndex::load(&ip, &tp, 50).is_none());
    }
}
