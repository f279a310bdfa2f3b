//! One segment: a file of batches back to back, starting at a base offset, with its sparse
//! indexes. The segment does positional I/O only; offsets, locking and durability policy
//! belong to the engine (`engine::segment`).

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::index::SegmentIndex;
use super::recovery;
use super::recycle;
use super::segment_path;
use super::zero_ahead::{self, ZeroAhead};
use crate::batch::{self, BatchHeader};

/// A segment file and its in-memory indexes.
#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: u64,
    pub size: u64,
    pub file: Arc<File>,
    pub path: PathBuf,
    pub index: SegmentIndex,
    /// When this process opened or created the segment; drives rolling by age. (After a
    /// restart the age counts from the restart: the file's own mtime moves with every write.)
    pub opened_at: Instant,
    /// Zeros kept ahead of `size` while the segment is active (the file may be longer
    /// than its data; see `zero_ahead`).
    pub zero: ZeroAhead,
}

/// Bytes cut from a segment's tail as damage, and why.
pub type Damage = (u64, String);

/// Where a lookup landed: the batch at `pos` holds the offset asked for (its base may be
/// lower), or `pos == size` when the offset is at the segment's end.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub pos: u64,
    pub batch_base: u64,
}

impl Segment {
    /// Creates an empty segment file (failing if it exists).
    pub fn create(dir: &Path, base: u64) -> std::io::Result<Segment> {
        let path = segment_path(dir, base, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Segment {
            base,
            next_offset: base,
            size: 0,
            file: Arc::new(file),
            path,
            index: SegmentIndex::default(),
            opened_at: Instant::now(),
            zero: ZeroAhead::new(0),
        })
    }

    /// Starts a segment at `base` in a recycled file (see `recycle`) of `len` bytes, already
    /// renamed to the segment's path: it is overwritten from byte 0, and its old length
    /// needs no zero-fill.
    pub fn recycled(dir: &Path, base: u64, file: File, len: u64) -> Segment {
        Segment {
            base,
            next_offset: base,
            size: 0,
            file: Arc::new(file),
            path: segment_path(dir, base, "log"),
            index: SegmentIndex::default(),
            opened_at: Instant::now(),
            zero: ZeroAhead::new(len),
        }
    }

    /// Opens the active (last) segment: scans every batch with CRCs and cuts the file at
    /// the end of the valid prefix. Returns the segment, the tail cut from a recycled file
    /// (see `recycle`: stale batches, expected), and the tail cut from any other file
    /// unless it was a zero-filled tail (see `zero_ahead`): how many bytes and why the scan
    /// stopped. (In a recycled file, a batch torn by the crash, or damage, cannot be told
    /// from the stale batches after it: the reason is kept so that it can be logged.)
    pub fn open_active(
        dir: &Path,
        base: u64,
        index_interval: u64,
    ) -> std::io::Result<(Segment, Option<Damage>, Option<Damage>)> {
        let path = segment_path(dir, base, "log");
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        let scan = recovery::scan(&file, len, base, true, index_interval)?;
        let recycled = recycle::marker_path(dir, base).exists();
        let (mut cut, mut stale) = (None, None);
        if scan.valid_len < len {
            let zeros = zero_ahead::is_zero_tail(&file, scan.valid_len, len)?;
            file.set_len(scan.valid_len)?;
            file.sync_all()?;
            let why = || {
                let reason = scan.stopped.clone();
                (
                    len - scan.valid_len,
                    reason.unwrap_or_else(|| "trailing bytes".into()),
                )
            };
            if recycled {
                stale = Some(why());
            } else if !zeros {
                cut = Some(why());
            }
        }
        // The active segment's index files (from an earlier life as a sealed segment, or a
        // crash mid-roll) are stale: its index lives in memory until it is sealed.
        let _ = fs::remove_file(segment_path(dir, base, "index"));
        let _ = fs::remove_file(segment_path(dir, base, "timeindex"));
        Ok((
            Segment {
                base,
                next_offset: scan.next_offset,
                size: scan.valid_len,
                file: Arc::new(file),
                path,
                index: scan.index,
                opened_at: Instant::now(),
                zero: ZeroAhead::new(scan.valid_len),
            },
            stale,
            cut,
        ))
    }

    /// Opens a sealed segment, whose successor starts at `next_base`. Loads its index
    /// files, or rebuilds them from a header scan when they are missing or inconsistent.
    pub fn open_sealed(
        dir: &Path,
        base: u64,
        next_base: u64,
        index_interval: u64,
    ) -> std::io::Result<Segment> {
        let path = segment_path(dir, base, "log");
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        let (ip, tp) = (
            segment_path(dir, base, "index"),
            segment_path(dir, base, "timeindex"),
        );
        let index = match SegmentIndex::load(&ip, &tp, len) {
            Some(ix) => ix,
            None => {
                let scan = recovery::scan(&file, len, base, false, index_interval)?;
                let mut ix = scan.index;
                ix.seal_times((scan.next_offset.saturating_sub(base + 1)) as u32);
                ix.write_files(&ip, &tp)?;
                ix
            }
        };
        Ok(Segment {
            base,
            next_offset: next_base,
            size: len,
            file: Arc::new(file),
            path,
            index,
            opened_at: Instant::now(),
            zero: ZeroAhead::new(len),
        })
    }

    /// Appends whole batches at the end of the file with vectored writes, each batch's
    /// baseOffset field replaced by the offset given with it, and indexes them. The
    /// batches' own buffers are written as they are (no copy).
    pub fn append_batches(
        &mut self,
        batches: &[(&[u8], u64, BatchHeader)],
        index_interval: u64,
    ) -> std::io::Result<()> {
        let offsets: Vec<[u8; 8]> = batches
            .iter()
            .map(|(_, off, _)| (*off as i64).to_be_bytes())
            .collect();
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for ((b, _, _), off) in batches.iter().zip(&offsets) {
            iov.push(IoSlice::new(off));
            iov.push(IoSlice::new(&b[8..]));
        }
        let bytes: u64 = batches.iter().map(|(b, _, _)| b.len() as u64).sum();
        self.zero.claim(self.size + bytes);
        // The active segment is written only by its shard's writer, under the state
        // lock; readers use positional reads, so moving the file cursor is safe.
        let mut f: &File = &self.file;
        f.seek(SeekFrom::Start(self.size))?;
        let mut slices = &mut iov[..];
        while !slices.is_empty() {
            let n = f.write_vectored(slices)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        let mut pos = self.size;
        for (b, off, h) in batches {
            let len = b.len() as u64;
            self.index.on_append(
                (off - self.base) as u32,
                pos as u32,
                len,
                h.max_timestamp,
                index_interval,
            );
            pos += len;
            self.next_offset = off + h.offset_count();
        }
        self.size = pos;
        Ok(())
    }

    /// Cuts the file back to its data (a zero-filled tail goes) after stopping the
    /// zero-fill helper, and syncs it (unless `sync` is off): with `sync_all` when it was
    /// cut, so that the new length is durable too.
    pub fn cut_to_data(&self, sync: bool) -> std::io::Result<()> {
        self.zero.stop();
        let cut = self.file.metadata()?.len() != self.size;
        if cut {
            self.file.set_len(self.size)?;
        }
        match (sync, cut) {
            (false, _) => Ok(()),
            (true, true) => self.file.sync_all(),
            (true, false) => self.file.sync_data(),
        }
    }

    /// Cuts the file to its data, syncs it (unless `sync` is off) and writes the index
    /// files, before the segment stops being the active one. The cut is durable before the
    /// next segment exists, so a sealed segment never has a zero-filled or stale tail.
    pub fn seal(&mut self, dir: &Path, sync: bool) -> std::io::Result<()> {
        self.cut_to_data(sync)?;
        // Cut to its data, a recycled file is an ordinary segment (a marker that survives
        // a crash belongs to a sealed segment, and recovery drops it).
        let _ = fs::remove_file(recycle::marker_path(dir, self.base));
        let last_rel = self.next_offset.saturating_sub(self.base + 1) as u32;
        self.index.seal_times(last_rel);
        self.index.write_files(
            &segment_path(dir, self.base, "index"),
            &segment_path(dir, self.base, "timeindex"),
        )
    }

    /// Finds the batch holding `offset` (which must be in `base..next_offset`), scanning
    /// headers forward from the nearest index entry.
    pub fn find(&self, offset: u64) -> std::io::Result<Option<Position>> {
        let rel = (offset - self.base) as u32;
        let (mut pos, mut batch_base) = match self.index.lookup(rel) {
            Some(e) => (e.pos as u64, self.base + e.rel as u64),
            None => (0, self.base),
        };
        let mut head = [0u8; batch::HEADER_LEN];
        while pos < self.size {
            if self.size - pos < batch::HEADER_LEN as u64 {
                return Ok(None);
            }
            self.file.read_exact_at(&mut head, pos)?;
            let Ok(h) = batch::parse_header(&head, false) else {
                return Ok(None);
            };
            let last = batch_base + h.last_offset_delta as u64;
            if last >= offset {
                return Ok(Some(Position { pos, batch_base }));
            }
            pos += h.total_len as u64;
            batch_base = last + 1;
        }
        Ok(Some(Position {
            pos: self.size,
            batch_base: self.next_offset,
        }))
    }

    /// Cuts the segment so that it ends at byte `pos`, where the batch with base offset
    /// `new_next` began, and rebuilds its in-memory index.
    pub fn truncate_to(
        &mut self,
        pos: u64,
        new_next: u64,
        index_interval: u64,
        dir: &Path,
    ) -> std::io::Result<()> {
        self.zero.reset(pos);
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        let scan = recovery::scan(&self.file, pos, self.base, false, index_interval)?;
        self.index = scan.index;
        self.size = pos;
        self.next_offset = new_next;
        let _ = fs::remove_file(segment_path(dir, self.base, "index"));
        let _ = fs::remove_file(segment_path(dir, self.base, "timeindex"));
        Ok(())
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self, dir: &Path) -> std::io::Result<()> {
        fs::remove_file(&self.path)?;
        self.delete_indexes(dir);
        Ok(())
    }

    fn delete_indexes(&self, dir: &Path) {
        let _ = fs::remove_file(segment_path(dir, self.base, "index"));
        let _ = fs::remove_file(segment_path(dir, self.base, "timeindex"));
        let _ = fs::remove_file(recycle::marker_path(dir, self.base));
    }

    /// Retires a sealed segment (retention): its `.log` file goes into `pool` when the pool
    /// has room and nothing else holds the file open (see `recycle`), else it is deleted;
    /// its index files are deleted either way. Returns whether the file was recycled.
    pub fn retire(self, dir: &Path, pool: &mut recycle::Pool) -> std::io::Result<bool> {
        self.zero.stop();
        let kept = Arc::strong_count(&self.file) == 1 && pool.retire(dir, &self.path)?;
        if kept {
            self.delete_indexes(dir);
            Ok(true)
        } else {
            self.delete_files(dir).map(|()| false)
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A zero-fill helper must not outlive the segment (a reopened log could be
        // appending where it writes).
        self.zero.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_file_still_held_open_is_deleted_not_recycled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mut pool = recycle::Pool::default();
        let a = Segment::create(d, 0).expect("create");
        // A reader that planned a read of the segment holds a clone of its handle.
        let reader = a.file.clone();
        assert!(!a.retire(d, &mut pool).expect("retire"));
        assert!(pool.is_empty() && !segment_path(d, 0, "log").exists());
        drop(reader);
        let b = Segment::create(d, 10).expect("create");
        assert!(b.retire(d, &mut pool).expect("retire"));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_recycled_file_needs_no_zero_fill_below_its_old_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(segment_path(d, 0, "log"), vec![9u8; 5000]).expect("write");
        let mut pool = recycle::Pool::default();
        assert!(pool.retire(d, &segment_path(d, 0, "log")).expect("retire"));
        let (file, len) = pool.take(d, 100).expect("take").expect("file");
        let seg = Segment::recycled(d, 100, file, len);
        assert_eq!((seg.size, seg.zero.ready()), (0, 5000));
        // Cut to its data (nothing yet), the file loses the old bytes.
        seg.cut_to_data(false).expect("cut");
        assert_eq!(seg.file.metadata().expect("meta").len(), 0);
    }
}
