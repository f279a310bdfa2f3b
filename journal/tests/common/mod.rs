//! Helpers shared by the journal's integration tests: real RecordBatch v2 batches encoded
//! with `kafka-protocol`, and a splitter for concatenated batches.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A batch of `records` records, each with a `value_len`-byte value derived from `seed`
/// (so that every batch of a test is distinguishable), all stamped `ts`.
pub fn kafka_batch(records: usize, value_len: usize, ts: i64, seed: u64) -> Bytes {
    let recs: Vec<Record> = (0..records)
        .map(|i| {
            let mut value = Vec::with_capacity(value_len);
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i as u64 + 1);
            while value.len() < value_len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                value.push(x as u8);
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch unless offset - sequence stays constant.
                sequence: i as i32,
                timestamp: ts,
                key: Some(Bytes::from(format!("key-{seed}-{i}"))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a test batch");
    buf.freeze()
}

/// The bytes the journal must serve for `batch` stored at `offset`: identical except for
/// the 8-byte baseOffset field.
pub fn at_offset(batch: &Bytes, offset: u64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[0..8].copy_from_slice(&(offset as i64).to_be_bytes());
    b.freeze()
}

/// Appends one batch and returns the offset it was stored at.
pub async fn append_one(log: &dyn journal::engine::ShardLog, b: &Bytes) -> u64 {
    log.append(vec![b.clone()])
        .await
        .expect("append")
        .base_offset
}

/// Splits concatenated batches by their length fields.
pub fn split_batches(mut b: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    while b.len() >= 12 {
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize + 12;
        assert!(
            len <= b.len(),
            "a served batch is cut short: {len} > {}",
            b.len()
        );
        out.push(Bytes::copy_from_slice(&b[..len]));
        b = &b[len..];
    }
    assert!(b.is_empty(), "{} stray bytes after the last batch", b.len());
    out
}

/// Decodes a served batch with `kafka-protocol` and returns its record offsets and values.
pub fn decode(batch: &Bytes) -> Vec<(i64, Option<Bytes>)> {
    let mut b = batch.clone();
    let set = RecordBatchDecoder::decode(&mut b).expect("served batch decodes");
    set.records
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `robustmq-journal` process started for a test, on loopback ports it picked itself
/// (port 0); killed by pid when dropped.
pub struct Node {
    pub child: std::process::Child,
    pub grpc: String,
    pub admin: String,
}

impl Node {
    /// Starts the binary with `--data-dir dir` and `args`, and waits (bounded) for its
    /// "listening" line.
    pub fn start(dir: &std::path::Path, args: &[&str]) -> Node {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_robustmq-journal"))
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("JOURNAL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn robustmq-journal");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("robustmq-journal did not report its ports: {e}");
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        Node {
            grpc: field("grpc="),
            admin: field("admin="),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (std's `Child::kill` sends SIGKILL on Unix) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn client(
        &self,
    ) -> robustmq_proto::journal::journal_service_client::JournalServiceClient<
        tonic::transport::Channel,
    > {
        let url = format!("http://{}", self.grpc);
        for _ in 0..100 {
            if let Ok(c) =
                robustmq_proto::journal::journal_service_client::JournalServiceClient::connect(
                    url.clone(),
                )
                .await
            {
                return c.max_decoding_message_size(64 << 20);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("could not connect to {url}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.0 GET over a real socket: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

pub fn shard_ref(topic: &str, shard: u32) -> Option<robustmq_proto::journal::ShardRef> {
    Some(robustmq_proto::journal::ShardRef {
        topic: topic.to_string(),
        shard,
    })
}
