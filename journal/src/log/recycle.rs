//! Recycling the files of segments retired by retention as the files of new segments.
//!
//! An fdatasync after an append that grows a file must also write the inode (its size) and
//! extent blocks; overwriting blocks that are already allocated and written flushes only
//! data. Like RocksDB's `recycle_log_file_num`, retention therefore keeps up to
//! [`POOL_MAX`] retired `.log` files in the shard's directory (`recycle-<slot>.log`), and
//! a roll renames one to the new segment's path and overwrites it from byte 0 instead of
//! creating an empty file. Below the old file's length no append changes metadata, and the
//! zero-fill helper (`zero_ahead`) has nothing to do there either.
//!
//! Until it is overwritten, a recycled file holds the old segment's batches after the new
//! data. They can never pass recovery's scan: their offsets are from an older range, below
//! the log start, so offset continuity stops the scan at the end of the new data (and a
//! torn piece of an old batch fails framing or its CRC). To tell that stale tail from
//! damage after a crash, a roll into a recycled file first leaves a marker
//! (`{base}.recycled`, empty) next to it; recovery reports a tail cut from a marked active
//! segment as recycled, not as damage, and then drops the markers. Sealing, truncating and
//! closing cut the file to its data as they do for a zero tail.
//!
//! Only a file nothing else holds open is recycled: a reader that planned a read of the
//! retired segment before retention ran keeps reading its handle outside the state lock,
//! and must not see the file overwritten under it (such a file is deleted, as before).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::segment_path;

/// Retired files kept for reuse, per shard.
pub const POOL_MAX: u32 = 2;

const PREFIX: &str = "recycle-";

/// The pool file in `slot`.
pub fn pool_path(dir: &Path, slot: u32) -> PathBuf {
    dir.join(format!("{PREFIX}{slot}.log"))
}

/// The marker left while the segment at `base` is a recycled file that may end in stale
/// batches.
pub fn marker_path(dir: &Path, base: u64) -> PathBuf {
    segment_path(dir, base, "recycled")
}

/// Whether a file name in a shard directory belongs to the pool (not a segment).
pub fn is_pool_name(name: &str) -> bool {
    pool_slot(name).is_some()
}

/// The slot part of a pool file's name (which may not be a valid slot).
fn pool_slot(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)?.strip_suffix(".log")
}

/// The retired files of one shard's directory, by slot.
#[derive(Debug, Default)]
pub struct Pool {
    /// Slots that hold a file.
    full: Vec<u32>,
}

impl Pool {
    /// At start-up: keeps the pool files in valid slots (retired segment files are as good
    /// after a restart) and deletes any other file with a pool name.
    pub fn load(dir: &Path) -> std::io::Result<Pool> {
        let mut full = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(slot) = pool_slot(name) else {
                continue;
            };
            match slot.parse::<u32>() {
                Ok(s) if s < POOL_MAX && !full.contains(&s) => full.push(s),
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        full.sort_unstable();
        Ok(Pool { full })
    }

    /// How many files the pool holds.
    pub fn len(&self) -> usize {
        self.full.len()
    }

    /// Whether the pool holds no file.
    pub fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Moves the retired segment file at `path` into a free slot. Returns false (leaving
    /// the file alone) when the pool is full.
    pub fn retire(&mut self, dir: &Path, path: &Path) -> std::io::Result<bool> {
        let Some(slot) = (0..POOL_MAX).find(|s| !self.full.contains(s)) else {
            return Ok(false);
        };
        fs::rename(path, pool_path(dir, slot))?;
        self.full.push(slot);
        Ok(true)
    }

    /// Renames a pool file to the path of a new segment at `base`, marked as recycled, and
    /// opens it. Returns the file and its (old) length, or `None` when the pool is empty.
    /// The caller syncs the directory, as after creating a segment.
    pub fn take(&mut self, dir: &Path, base: u64) -> std::io::Result<Option<(File, u64)>> {
        let Some(slot) = self.full.pop() else {
            return Ok(None);
        };
        // The marker goes first: a crash between the two leaves an orphan marker (dropped
        // by recovery), never a recycled segment without one.
        File::create(marker_path(dir, base))?;
        let path = segment_path(dir, base, "log");
        fs::rename(pool_path(dir, slot), &path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Some((file, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_two_files_and_hands_them_out_as_marked_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mut pool = Pool::load(d).expect("load");
        assert!(pool.is_empty());
        for base in [0u64, 10, 20] {
            fs::write(segment_path(d, base, "log"), vec![7u8; 100 + base as usize]).expect("w");
        }
        assert!(pool.retire(d, &segment_path(d, 0, "log")).expect("retire"));
        assert!(pool.retire(d, &segment_path(d, 10, "log")).expect("retire"));
        assert!(!pool.retire(d, &segment_path(d, 20, "log")).expect("retire"));
        assert!(
            segment_path(d, 20, "log").exists(),
            "a full pool took a file"
        );
        assert!(!segment_path(d, 0, "log").exists());
        assert_eq!(pool.len(), 2);

        let (_, len) = pool.take(d, 30).expect("take").expect("a file");
        assert_eq!(len, 110);
        assert!(segment_path(d, 30, "log").exists());
        assert!(marker_path(d, 30).exists());
        assert_eq!(pool.len(), 1);
        let (_, len) = pool.take(d, 40).expect("take").expect("a file");
        assert_eq!(len, 100);
        assert!(pool.take(d, 50).expect("take").is_none());
        assert!(!segment_path(d, 50, "log").exists());
        assert!(!marker_path(d, 50).exists());
    }

    #[test]
    fn start_up_keeps_valid_slots_and_deletes_other_pool_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in [
            "recycle-0.log",
            "recycle-1.log",
            "recycle-7.log",
            "recycle-x.log",
        ] {
            fs::write(d.join(name), b"old").expect("write");
        }
        fs::write(segment_path(d, 5, "log"), b"seg").expect("write");
        let pool = Pool::load(d).expect("load");
        assert_eq!(pool.len(), 2);
        assert!(d.join("recycle-0.log").exists() && d.join("recycle-1.log").exists());
        assert!(!d.join("recycle-7.log").exists() && !d.join("recycle-x.log").exists());
        assert!(
            segment_path(d, 5, "log").exists(),
            "a segment was taken for a pool file"
        );
        assert!(is_pool_name("recycle-0.log") && !is_pool_name("00000000000000000005.log"));
    }
}
