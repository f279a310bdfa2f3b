//! The Raft log's files: append-only segments of checksummed records, and the thread that
//! writes and syncs them.
//!
//! A record is `[body length: u32 LE][crc32c(body): u32 LE][body]`; the body is the encoded
//! entry, which starts with its log id. Segment `{first index:020}.log` holds consecutive
//! entries from that index on. The caller assigns every record its position when it
//! appends, so the in-memory index knows where an entry lives before it is written; the
//! writer thread performs the writes in submission order and calls `fdatasync` once for
//! all the appends queued behind each other (group commit) before reporting them durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use tokio::sync::oneshot;

use super::checksum::crc32c;
use super::{LogId, decode};

pub const HEADER: usize = 8;

/// Appends the record of `body` to `out`.
pub fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

/// Creates (or opens) a segment for reading and writing.
pub fn open_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(segment_path(dir, id))
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads the body of the record at `offset` and checks it against its header.
pub fn read_body(file: &File, offset: u64, body_len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEADER + body_len as usize];
    file.read_exact_at(&mut buf, offset)?;
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = buf.split_off(HEADER);
    if len != body_len || crc32c(&body) != crc {
        return Err(corrupt(format!(
            "log record at offset {offset} does not match its checksum"
        )));
    }
    Ok(body)
}

/// One record found on recovery.
pub struct Scanned {
    pub log_id: LogId,
    pub offset: u64,
    pub body_len: u32,
}

pub struct ScannedSegment {
    pub id: u64,
    pub file: File,
    pub len: u64,
    pub records: Vec<Scanned>,
}

/// Reads every segment in `dir`, oldest first. A torn tail of the newest segment (a crash
/// in the middle of an append) is cut off; damage anywhere else is an error.
pub fn recover(dir: &Path) -> io::Result<Vec<ScannedSegment>> {
    std::fs::create_dir_all(dir)?;
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        let newest = n + 1 == ids.len();
        let file = open_segment(dir, *id)?;
        let data = std::fs::read(segment_path(dir, *id))?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            match parse(&data[pos..]) {
                Some((log_id, body_len)) => {
                    records.push(Scanned {
                        log_id,
                        offset: pos as u64,
                        body_len,
                    });
                    pos += HEADER + body_len as usize;
                }
                None if newest => {
                    tracing::warn!(segment = id, offset = pos, "cutting off a torn log tail");
                    file.set_len(pos as u64)?;
                    file.sync_data()?;
                    break;
                }
                None => {
                    return Err(corrupt(format!(
                        "log segment {} is damaged at offset {pos}",
                        segment_path(dir, *id).display()
                    )));
                }
            }
        }
        out.push(ScannedSegment {
            id: *id,
            file,
            len: pos as u64,
            records,
        });
    }
    Ok(out)
}

/// The log id and body length of the complete, intact record at the start of `data`.
fn parse(data: &[u8]) -> Option<(LogId, u32)> {
    let header = data.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let body = data.get(HEADER..HEADER + len as usize)?;
    if crc32c(body) != crc {
        return None;
    }
    // The entry's encoding starts with its log id.
    let log_id = decode::<LogId>(body).ok()?;
    Some((log_id, len))
}

/// Called once the write it belongs to is durable (or failed).
pub type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

pub enum Op {
    Append {
        file: Arc<File>,
        offset: u64,
        bytes: Vec<u8>,
        /// The segment was created by this append: its directory entry must be synced too.
        new_segment: bool,
        last_index: u64,
        done: Done,
    },
    /// Deletes `remove` (newest first), then cuts `file` to `len`.
    Truncate {
        file: Arc<File>,
        len: u64,
        remove: Vec<PathBuf>,
        /// The first index removed.
        from_index: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    Remove {
        paths: Vec<PathBuf>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// Handle of the writer thread. Dropping every clone stops it.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Op>,
    /// Every log index below this one is durable.
    pub durable: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer of the segments in `dir`; indexes below `durable` are on disk.
    pub fn start(dir: PathBuf, durable: u64) -> io::Result<Self> {
        let (tx, rx) = channel();
        let durable = Arc::new(AtomicU64::new(durable));
        let d = durable.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(dir, rx, d))?;
        Ok(Self { tx, durable })
    }

    pub fn send(&self, op: Op) -> io::Result<()> {
        self.tx
            .send(op)
            .map_err(|_| io::Error::other("the Raft log writer stopped"))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn run(dir: PathBuf, rx: Receiver<Op>, durable: Arc<AtomicU64>) {
    // After a failed write the files are in an unknown state: every later request fails.
    let mut failed: Option<String> = None;
    let mut next = rx.recv().ok();
    while let Some(op) = next.take() {
        match op {
            Op::Append { .. } => {
                let mut group = vec![op];
                // Group commit: everything already queued behind shares one sync.
                loop {
                    match rx.try_recv() {
                        Ok(op @ Op::Append { .. }) => group.push(op),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = match &failed {
                    Some(e) => Err(io::Error::other(e.clone())),
                    None => write_group(&dir, &group, &durable),
                };
                if let Err(e) = &result {
                    failed.get_or_insert_with(|| e.to_string());
                }
                for op in group {
                    if let Op::Append { done, .. } = op {
                        done(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        });
                    }
                }
            }
            Op::Truncate {
                file,
                len,
                remove,
                from_index,
                done,
            } => {
                let result = match &failed {
                    Some(e) => Err(io::Error::other(e.clone())),
                    None => truncate(&dir, &file, len, &remove),
                };
                match &result {
                    Ok(()) => {
                        durable.fetch_min(from_index, Ordering::Release);
                    }
                    Err(e) => {
                        failed.get_or_insert_with(|| e.to_string());
                    }
                }
                let _ = done.send(result);
            }
            Op::Remove { paths, done } => {
                let result = match &failed {
                    Some(e) => Err(io::Error::other(e.clone())),
                    None => remove(&dir, &paths),
                };
                if let Err(e) = &result {
                    failed.get_or_insert_with(|| e.to_string());
                }
                let _ = done.send(result);
            }
        }
        if next.is_none() {
            next = rx.recv().ok();
        }
    }
}

fn write_group(dir: &Path, group: &[Op], durable: &AtomicU64) -> io::Result<()> {
    let mut to_sync: Vec<&Arc<File>> = Vec::new();
    let mut new_segment = false;
    let mut last = None;
    for op in group {
        if let Op::Append {
            file,
            offset,
            bytes,
            new_segment: created,
            last_index,
            ..
        } = op
        {
            file.write_all_at(bytes, *offset)?;
            if !to_sync.iter().any(|f| Arc::ptr_eq(f, file)) {
                to_sync.push(file);
            }
            new_segment |= *created;
            last = Some(*last_index);
        }
    }
    for f in to_sync {
        f.sync_data()?;
    }
    if new_segment {
        sync_dir(dir)?;
    }
    if let Some(last) = last {
        durable.store(last + 1, Ordering::Release);
    }
    Ok(())
}

fn truncate(dir: &Path, file: &File, len: u64, remove_paths: &[PathBuf]) -> io::Result<()> {
    // Later segments go first: a crash in between leaves a shorter, still contiguous log.
    remove(dir, remove_paths)?;
    file.set_len(len)?;
    file.sync_data()
}

fn remove(dir: &Path, paths: &[PathBuf]) -> io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::encode;
    use openraft::CommittedLeaderId;

    fn body(index: u64) -> Vec<u8> {
        let mut b = encode(&LogId::new(CommittedLeaderId::new(1, 1), index)).unwrap();
        b.extend_from_slice(&[7u8; 20]);
        b
    }

    #[test]
    fn recovery_cuts_a_torn_tail_and_keeps_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for i in 1..=3 {
            frame(&body(i), &mut bytes);
        }
        let whole = bytes.len();
        // Half of a fourth record: what a crash during the append leaves.
        let mut fourth = Vec::new();
        frame(&body(4), &mut fourth);
        bytes.extend_from_slice(&fourth[..fourth.len() / 2]);
        std::fs::write(segment_path(dir.path(), 1), &bytes).unwrap();

        let segs = recover(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        let indexes: Vec<u64> = segs[0].records.iter().map(|r| r.log_id.index).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
        assert_eq!(segs[0].len, whole as u64);
        let on_disk = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        assert_eq!(on_disk, whole as u64);
        let r = &segs[0].records[1];
        assert_eq!(
            read_body(&segs[0].file, r.offset, r.body_len).unwrap(),
            body(2)
        );
    }

    #[test]
    fn damage_before_the_newest_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Vec::new();
        frame(&body(1), &mut first);
        let last = first.len() - 1;
        first[last] ^= 0xff;
        std::fs::write(segment_path(dir.path(), 1), &first).unwrap();
        let mut second = Vec::new();
        frame(&body(2), &mut second);
        std::fs::write(segment_path(dir.path(), 2), &second).unwrap();
        assert!(recover(dir.path()).is_err());
    }

    #[tokio::test]
    async fn writer_reports_appends_durable_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(dir.path().to_path_buf(), 0).unwrap();
        let file = Arc::new(open_segment(dir.path(), 1).unwrap());
        let mut offset = 0;
        let mut waits = Vec::new();
        for i in 1..=20 {
            let mut bytes = Vec::new();
            frame(&body(i), &mut bytes);
            let (tx, rx) = oneshot::channel();
            let len = bytes.len() as u64;
            writer
                .send(Op::Append {
                    file: file.clone(),
                    offset,
                    bytes,
                    new_segment: i == 1,
                    last_index: i,
                    done: Box::new(move |r| {
                        let _ = tx.send((i, r.is_ok()));
                    }),
                })
                .unwrap();
            offset += len;
            waits.push(rx);
        }
        for (n, rx) in waits.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap(), (n as u64 + 1, true));
        }
        assert_eq!(writer.durable.load(Ordering::Acquire), 21);
        let segs = recover(dir.path()).unwrap();
        assert_eq!(segs[0].records.len(), 20);
    }
}
