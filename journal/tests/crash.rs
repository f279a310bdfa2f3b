//! Crash safety with a real process: appenders write with fsync=always and record every
//! acknowledged offset; the node is SIGKILLed mid-stream; a torn half batch is then left at
//! the end of the active segment (what a crash in the middle of a write leaves behind).
//! After a restart every acknowledged batch must read back byte-identical at its offset,
//! every served batch must be one that was sent, and the torn bytes must never be served.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Node, at_offset, kafka_batch, now_ms, shard_ref, split_batches};
use robustmq_proto::journal as pb;

const APPENDERS: u64 = 8;
const PER_APPENDER: u64 = 5_000;
const KILL_AFTER_ACKS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_and_torn_tails_are_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(dir.path(), &["--node-id", "1", "--default-fsync", "always"]);
    let mut c = node.client().await;
    c.create_shard(pb::CreateShardRequest {
        shard: shard_ref("crash", 0),
        spec: Some(pb::ShardSpec {
            engine: pb::Engine::Segment as i32,
            fsync: pb::Fsync::Always as i32,
            segment_bytes: 64 * 1024,
            ..Default::default()
        }),
        leader: 0,
        epoch: 1,
    })
    .await
    .expect("create shard");

    // seed -> batch bytes, for every batch ever sent (acked or not).
    let sent: Arc<Mutex<HashMap<u64, Bytes>>> = Arc::default();
    // (base offset, seed) of acknowledged appends.
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let (sent, acked, mut c) = (sent.clone(), acked.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_APPENDER {
                let seed = t * 1_000_000 + i;
                let b = kafka_batch(
                    1 + (i % 4) as usize,
                    200 + (seed % 400) as usize,
                    now_ms(), // current timestamps: the default time retention must not apply
                    seed,
                );
                sent.lock().expect("lock").insert(seed, b.clone());
                let r = c
                    .append(pb::AppendRequest {
                        shard: shard_ref("crash", 0),
                        leader_epoch: 1,
                        batches: vec![b],
                    })
                    .await;
                match r {
                    Ok(r) => acked
                        .lock()
                        .expect("lock")
                        .push((r.into_inner().base_offset as u64, seed)),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "appends too slow to reach {KILL_AFTER_ACKS} acks"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL while appenders are mid-stream.
    node.kill();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("appender did not stop after the kill")
            .expect("appender panicked");
    }
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);

    // Leave half a batch at the end of the active segment, as a torn write would.
    let shard_dir = dir.path().join("crash@000000");
    let mut logs: Vec<_> = std::fs::read_dir(&shard_dir)
        .expect("shard dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() > 1, "expected several segments, found {logs:?}");
    let active = logs.last().expect("a segment").clone();
    let torn = at_offset(&kafka_batch(3, 300, now_ms(), 424242), 0);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open active segment")
        .write_all(&torn[..torn.len() / 2])
        .expect("write torn tail");

    let node = Node::start(dir.path(), &["--node-id", "1", "--default-fsync", "always"]);
    let mut c = node.client().await;
    let mut stream = c
        .read(pb::ReadRequest {
            shard: shard_ref("crash", 0),
            offset: 0,
            max_bytes: 256 * 1024,
            max_wait_ms: 0,
            stop_at_tail: true,
            single_response: false,
        })
        .await
        .expect("read")
        .into_inner();
    let mut served = Vec::new();
    for _ in 0..100_000 {
        match stream.message().await.expect("read stream") {
            Some(m) => served.extend(split_batches(&m.records)),
            None => break,
        }
    }

    // Every served batch is valid, dense, and one that a client sent.
    let by_body: HashMap<&[u8], u64> = sent.iter().map(|(s, b)| (&b[8..], *s)).collect();
    let mut at: HashMap<u64, u64> = HashMap::new();
    let mut next = 0u64;
    for b in &served {
        let h = journal::batch::validate(b).expect("served batch fails validation");
        assert_eq!(h.base_offset as u64, next, "offsets not dense");
        let seed = by_body
            .get(&b[8..])
            .unwrap_or_else(|| panic!("served a batch at {next} that nobody sent"));
        at.insert(next, *seed);
        next += h.offset_count();
    }
    // Every acknowledged batch is there, byte-identical, at its acknowledged offset.
    for (off, seed) in &acked {
        assert_eq!(
            at.get(off),
            Some(seed),
            "acked batch {seed} at offset {off} lost"
        );
        let pos = served
            .iter()
            .position(|b| i64::from_be_bytes(b[..8].try_into().expect("8")) as u64 == *off)
            .expect("present");
        assert_eq!(served[pos], at_offset(&sent[seed], *off));
    }
    let stats = c
        .get_shard_stats(pb::ShardRef {
            topic: "crash".into(),
            shard: 0,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        stats.log_end_offset as u64, next,
        "log end is past the last valid batch"
    );
    // The log continues right after the cut.
    let r = c
        .append(pb::AppendRequest {
            shard: shard_ref("crash", 0),
            leader_epoch: 1,
            batches: vec![kafka_batch(1, 10, 0, 7)],
        })
        .await
        .expect("append after restart")
        .into_inner();
    assert_eq!(r.base_offset as u64, next);
    eprintln!(
        "crash test: {} acked, {} served (incl. unacked-but-written), {} sent",
        acked.len(),
        served.len(),
        sent.len()
    );
}
