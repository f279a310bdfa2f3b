//! JournalService over real loopback sockets against a real `robustmq-journal` process
//! running standalone (no meta): shard admin, append and fencing, the long-polling read
//! stream, limits and error details, and the admin HTTP port.

mod common;

use std::time::{Duration, Instant};

use common::{Node, at_offset, http_get, kafka_batch, shard_ref, split_batches};
use robustmq_proto::journal as pb;
use tonic::Code;

/// A read of shard `orders/0`.
fn read_request(
    offset: i64,
    max_bytes: u32,
    max_wait_ms: u32,
    stop_at_tail: bool,
    single_response: bool,
) -> pb::ReadRequest {
    pb::ReadRequest {
        shard: shard_ref("orders", 0),
        offset,
        max_bytes,
        max_wait_ms,
        stop_at_tail,
        single_response,
    }
}

fn meta(s: &tonic::Status, key: &str) -> String {
    s.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn create(
    topic: &str,
    shard: u32,
    leader: u64,
    epoch: u64,
    spec: pb::ShardSpec,
) -> pb::CreateShardRequest {
    pb::CreateShardRequest {
        shard: shard_ref(topic, shard),
        spec: Some(spec),
        leader,
        epoch,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_and_fencing_over_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path(), &["--node-id", "1"]);
    let mut c = node.client().await;

    let spec = pb::ShardSpec {
        engine: pb::Engine::Segment as i32,
        fsync: pb::Fsync::Always as i32,
        segment_bytes: 4096,
        ..Default::default()
    };
    let st = c
        .create_shard(create("orders", 0, 0, 5, spec))
        .await
        .expect("create")
        .into_inner();
    assert_eq!((st.leader, st.epoch, st.engine.as_str()), (1, 5, "segment"));
    // Idempotent with the same spec.
    c.create_shard(create("orders", 0, 0, 5, spec))
        .await
        .expect("create again");

    let b0 = kafka_batch(3, 100, 1000, 1);
    let r = c
        .append(pb::AppendRequest {
            shard: shard_ref("orders", 0),
            leader_epoch: 5,
            batches: vec![b0.clone()],
        })
        .await
        .expect("append")
        .into_inner();
    assert_eq!((r.base_offset, r.log_end_offset), (0, 3));

    // A stale epoch is fenced, and the status says which epoch is current.
    let err = c
        .append(pb::AppendRequest {
            shard: shard_ref("orders", 0),
            leader_epoch: 4,
            batches: vec![b0.clone()],
        })
        .await
        .expect_err("stale epoch accepted");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(meta(&err, "x-journal-error"), "fenced_epoch");
    assert_eq!(meta(&err, "x-journal-epoch"), "5");

    // A corrupt batch is refused with a clear message.
    let mut bad = b0.to_vec();
    bad[70] ^= 0xff;
    let err = c
        .append(pb::AppendRequest {
            shard: shard_ref("orders", 0),
            leader_epoch: 5,
            batches: vec![bad.into()],
        })
        .await
        .expect_err("corrupt batch accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("CRC"), "message: {}", err.message());

    // The read stream serves what is there, then long-polls and streams new appends.
    let mut stream = c
        .read(read_request(0, 0, 300, false, false))
        .await
        .expect("read")
        .into_inner();
    let first = stream.message().await.expect("msg").expect("some");
    assert_eq!(first.records, at_offset(&b0, 0));
    assert_eq!((first.next_offset, first.high_watermark), (3, 3));
    // Nothing new: an empty heartbeat after about max_wait.
    let t = Instant::now();
    let hb = stream.message().await.expect("msg").expect("some");
    assert!(hb.records.is_empty() && hb.high_watermark == 3);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "heartbeat came too early"
    );
    let mut c2 = c.clone();
    let b1 = kafka_batch(2, 50, 2000, 2);
    let b1c = b1.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c2.append(pb::AppendRequest {
            shard: shard_ref("orders", 0),
            leader_epoch: 5,
            batches: vec![b1c],
        })
        .await
    });
    let mut got = None;
    for _ in 0..50 {
        let m = stream.message().await.expect("msg").expect("some");
        if !m.records.is_empty() {
            got = Some(m);
            break;
        }
    }
    appender.await.expect("join").expect("append");
    let m = got.expect("the stream never delivered the new batch");
    assert_eq!(m.records, at_offset(&b1, 3));
    assert_eq!(m.next_offset, 5);
    drop(stream);

    // stop_at_tail ends the stream.
    let mut s = c
        .read(read_request(1, 1, 0, true, false))
        .await
        .expect("read")
        .into_inner();
    let mut batches = Vec::new();
    while let Some(m) = s.message().await.expect("msg") {
        batches.extend(split_batches(&m.records));
    }
    assert_eq!(batches, vec![at_offset(&b0, 0), at_offset(&b1, 3)]);

    // single_response ends the stream after one response, although more is there to read.
    let mut s = c
        .read(read_request(1, 1, 0, false, true))
        .await
        .expect("read")
        .into_inner();
    let mut responses = Vec::new();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(m) = s.message().await.expect("msg") {
            responses.push(m);
        }
    })
    .await;
    assert!(drained.is_ok(), "the stream did not end after its response");
    assert_eq!(
        responses.len(),
        1,
        "one response, then the end of the stream"
    );
    assert_eq!(
        split_batches(&responses[0].records),
        vec![at_offset(&b0, 0)]
    );

    // Reads outside the log carry the log start in metadata.
    let err = c
        .read(pb::ReadRequest {
            shard: shard_ref("orders", 0),
            offset: 99,
            ..Default::default()
        })
        .await
        .expect_err("read past the end");
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(meta(&err, "x-journal-log-start"), "0");

    let ts = c
        .offset_for_timestamp(pb::OffsetForTimestampRequest {
            shard: shard_ref("orders", 0),
            timestamp_ms: 1500,
        })
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!((ts.found, ts.offset), (true, 3));

    let stats = c
        .get_shard_stats(pb::ShardRef {
            topic: "orders".into(),
            shard: 0,
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (
            stats.log_start_offset,
            stats.high_watermark,
            stats.log_end_offset
        ),
        (0, 5, 5)
    );
    assert!(stats.size_bytes > 0);

    // The admin port reflects it all.
    let (code, body) = http_get(&node.admin, "/v1/shards");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json[0]["topic"], "orders");
    assert_eq!(json[0]["high_watermark"], 5);
    let (code, metrics) = http_get(&node.admin, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "journal_append_bytes_total",
        "journal_fsync_latency_seconds_count",
        "journal_append_latency_seconds_bucket",
        "journal_shards 1",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let fsyncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("journal_fsync_latency_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(fsyncs >= 2, "fsync histogram count {fsyncs}");
    assert_eq!(http_get(&node.admin, "/healthz").0, 200);
    assert_eq!(http_get(&node.admin, "/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_limits_and_unknown_shards_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(
        dir.path(),
        &["--node-id", "1", "--max-append-bytes", "4096"],
    );
    let mut c = node.client().await;
    let mem = pb::ShardSpec {
        engine: pb::Engine::Memory as i32,
        memory_max_bytes: 1 << 20,
        ..Default::default()
    };
    // A shard led by node 9: appends here are rejected, naming the leader.
    c.create_shard(create("t", 1, 9, 2, mem))
        .await
        .expect("create");
    let err = c
        .append(pb::AppendRequest {
            shard: shard_ref("t", 1),
            leader_epoch: 2,
            batches: vec![kafka_batch(1, 10, 0, 1)],
        })
        .await
        .expect_err("append on a follower accepted");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(meta(&err, "x-journal-error"), "not_leader");
    assert_eq!(meta(&err, "x-journal-leader-id"), "9");

    c.create_shard(create("t", 2, 0, 0, mem))
        .await
        .expect("create");
    let err = c
        .append(pb::AppendRequest {
            shard: shard_ref("t", 2),
            leader_epoch: 0,
            batches: vec![kafka_batch(1, 5000, 0, 1)],
        })
        .await
        .expect_err("oversized append accepted");
    assert_eq!(err.code(), Code::ResourceExhausted);

    let err = c
        .append(pb::AppendRequest {
            shard: shard_ref("nope", 0),
            leader_epoch: 0,
            batches: vec![kafka_batch(1, 5, 0, 1)],
        })
        .await
        .expect_err("unknown shard accepted");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .append(pb::AppendRequest {
            shard: None,
            leader_epoch: 0,
            batches: vec![],
        })
        .await
        .expect_err("missing shard accepted");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Changing a shard's engine through CreateShard is refused rather than losing data.
    let seg = pb::ShardSpec {
        engine: pb::Engine::Segment as i32,
        ..Default::default()
    };
    let err = c
        .create_shard(create("t", 2, 0, 0, seg))
        .await
        .expect_err("engine change");
    assert_eq!(err.code(), Code::AlreadyExists);

    c.delete_shard(pb::ShardRef {
        topic: "t".into(),
        shard: 2,
    })
    .await
    .expect("delete");
    let list = c
        .list_shards(pb::ListShardsRequest { topic: "t".into() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.shards.len(), 1);
    assert_eq!(list.shards[0].shard.as_ref().map(|s| s.shard), Some(1));
}
