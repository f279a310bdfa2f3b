//! The on-disk log of one shard: segment files, their sparse indexes, start-up recovery, and
//! the zero-fill ahead of the active segment's end, and the recycling of retired segment
//! files.
//!
//! ```text
//! {data_dir}/{topic%enc}@{index:06}/
//!     shard.yaml                   the shard's id, spec and leadership
//!     00000000000000000000.log     batches, back to back, exactly as served
//!     00000000000000000000.index   sparse offset index (sealed segments only)
//!     00000000000000000000.timeindex
//!     00000000000000004711.log     the active segment (its indexes live in memory and are
//!                                  rebuilt by recovery at start-up; with fsync=always it
//!                                  may end in zeros written ahead, see `zero_ahead`,
//!                                  or in a retired segment's stale batches, see `recycle`)
//!     00000000000000004711.recycled  marker: the active segment is a recycled file
//!     recycle-0.log                retired segment files kept for reuse (at most 2)
//! ```

pub mod index;
pub mod recovery;
pub mod recycle;
pub mod segment;
pub mod zero_ahead;

use std::path::{Path, PathBuf};

/// `{base:020}.{ext}` inside `dir`.
pub fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}
