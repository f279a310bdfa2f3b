//! Start-up recovery of a segment: scan its batches from the start, checking each one's
//! framing, magic, CRC and offset continuity, and find where the valid prefix ends.
//!
//! The active (last) segment is always scanned with CRCs: whatever follows the first bad
//! batch (a torn write from a crash, or garbage) is cut off, so a half-written batch is
//! never served. Sealed segments are scanned (headers only) just when their index files are
//! missing or broken; their CRCs are checked on every read instead.
//!
//! Offset continuity is also what keeps a recycled file's stale batches out (see
//! `recycle`): their offsets are from a range below the log start, so the scan stops where
//! the new data ends.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use super::index::SegmentIndex;
use crate::batch;

/// What a scan found.
#[derive(Debug)]
pub struct ScanResult {
    /// Bytes from the start of the file that hold whole, valid batches.
    pub valid_len: u64,
    /// The offset after the last valid batch (the segment's base if none).
    pub next_offset: u64,
    pub index: SegmentIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Scans `file` (of `file_len` bytes) whose first batch must have base offset `base`.
pub fn scan(
    file: &File,
    file_len: u64,
    base: u64,
    verify_crc: bool,
    index_interval: u64,
) -> std::io::Result<ScanResult> {
    // The file's cursor may be anywhere (appends move it); scans start at byte 0.
    let mut f: &File = file;
    f.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut pos = 0u64;
    let mut next = base;
    let mut index = SegmentIndex::default();
    let mut buf = Vec::new();
    let mut stopped = None;
    while pos < file_len {
        let remaining = file_len - pos;
        if remaining < batch::HEADER_LEN as u64 {
            stopped = Some(format!(
                "{remaining} trailing bytes, shorter than a batch header"
            ));
            break;
        }
        let mut head = [0u8; batch::HEADER_LEN];
        reader.read_exact(&mut head)?;
        let h = match batch::parse_header(&head, false) {
            Ok(h) => h,
            Err(e) => {
                stopped = Some(format!("bad header at byte {pos}: {e}"));
                break;
            }
        };
        if h.total_len as u64 > remaining {
            stopped = Some(format!(
                "batch at byte {pos} declares {} bytes, only {remaining} remain (torn write)",
                h.total_len
            ));
            break;
        }
        if h.base_offset < 0 || h.base_offset as u64 != next {
            stopped = Some(format!(
                "batch at byte {pos} has base offset {}, expected {next}",
                h.base_offset
            ));
            break;
        }
        let body_len = h.total_len - batch::HEADER_LEN;
        if verify_crc {
            buf.clear();
            buf.extend_from_slice(&head);
            buf.resize(h.total_len, 0);
            reader.read_exact(&mut buf[batch::HEADER_LEN..])?;
            if let Err(e) = batch::check_crc(&buf) {
                stopped = Some(format!("batch at byte {pos} (offset {next}): {e}"));
                break;
            }
        } else {
            reader.seek_relative(body_len as i64)?;
        }
        let rel = (next - base) as u32;
        index.on_append(
            rel,
            pos as u32,
            h.total_len as u64,
            h.max_timestamp,
            index_interval,
        );
        pos += h.total_len as u64;
        next += h.offset_count();
    }
    Ok(ScanResult {
        valid_len: pos,
        next_offset: next,
        index,
        stopped,
    })
}
