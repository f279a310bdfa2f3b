//! Three real `robustmq-meta` processes on loopback: elections, forwarding, crash and
//! restart, snapshots, and the watch feed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::harness::wait_for;
use e2e::meta::MetaCluster;
use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use robustmq_proto::meta::*;
use tonic::Code;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(30);

fn policy(name: &str) -> StoragePolicy {
    StoragePolicy {
        name: name.into(),
        engine: Engine::Segment as i32,
        replicas: 1,
        ..Default::default()
    }
}

fn topic(name: &str, shards: u32) -> Topic {
    Topic {
        name: name.into(),
        shards,
        storage_policy: "p".into(),
        ..Default::default()
    }
}

fn stale<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "robustmq-consistency",
        "stale".parse().expect("header value"),
    );
    r
}

async fn topic_names(
    c: &mut MetaServiceClient<Channel>,
    stale_read: bool,
) -> Result<BTreeSet<String>> {
    let req = if stale_read {
        stale(ListRequest::default())
    } else {
        tonic::Request::new(ListRequest::default())
    };
    Ok(c.list_topics(req)
        .await?
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_is_elected_and_a_write_sent_to_a_follower_succeeds() -> Result<()> {
    let cluster = MetaCluster::start("elect", 3, &[]).await?;
    let leader = cluster.leader(T).await?;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    let mut c1 = cluster.client(f1).await?;
    c1.create_policy(policy("p")).await?;
    let created = c1.create_topic(topic("orders", 3)).await?.into_inner();
    assert_eq!(created.shards.len(), 3, "three shards: {created:?}");

    // A linearizable read on the other follower sees the write at once.
    let mut c2 = cluster.client(f2).await?;
    let got = c2
        .get_topic(NameRequest {
            name: "orders".into(),
        })
        .await?
        .into_inner();
    assert_eq!(got.topic.expect("topic").kafka_name, "orders");

    // Errors name what is wrong, with the right codes.
    let dup = c2.create_topic(topic("orders", 1)).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
    assert!(dup.message().contains("orders"), "{dup:?}");
    let mut no_policy = topic("x", 1);
    no_policy.storage_policy = "missing".into();
    let e = c2.create_topic(no_policy).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("missing"), "{e:?}");
    let e = c2.create_topic(topic("zero", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("shards"), "{e:?}");
    let mut bad_filter = topic("f", 1);
    bad_filter.mqtt_filter = "a/#/b".into();
    let e = c2.create_topic(bad_filter).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("mqtt_filter"), "{e:?}");

    // Prometheus metrics: Raft progress, proposal latency, gRPC requests by method and code.
    let (status, metrics) = e2e::harness::http_get(&cluster.node(f2).admin, "/metrics")?;
    assert_eq!(status, 200);
    for needle in [
        "robustmq_meta_raft_term ",
        &format!("robustmq_meta_raft_leader_id {leader}"),
        "robustmq_meta_raft_commit_index ",
        "robustmq_meta_raft_applied_index ",
        "robustmq_meta_proposal_duration_seconds_bucket",
        "robustmq_meta_grpc_requests_total{method=\"CreateTopic\",code=\"AlreadyExists\"} 1",
        "robustmq_meta_grpc_requests_total{method=\"GetTopic\",code=\"OK\"} 1",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle:?}:\n{metrics}"
        );
    }

    // Every node agrees on the leader and the membership.
    for id in 1..=3 {
        let j = cluster.cluster_json(id)?;
        assert_eq!(j["leader_id"].as_u64(), Some(leader), "node {id}: {j}");
        assert_eq!(
            j["voters"].as_array().map(Vec::len),
            Some(3),
            "node {id}: {j}"
        );
    }
    cluster.pass();
    Ok(())
}

/// Creates topics `{prefix}-{start}..` one after another through whichever node answers,
/// until `count` are acknowledged; bumps `progress` after each. Returns the acknowledged
/// names.
async fn create_until(
    mut clients: Vec<MetaServiceClient<Channel>>,
    prefix: &str,
    start: usize,
    count: usize,
    progress: Arc<AtomicUsize>,
) -> Result<Vec<String>> {
    let mut acked = Vec::new();
    let mut next = 0usize;
    for i in start..start + count {
        let name = format!("{prefix}-{i}");
        let deadline = Instant::now() + T;
        loop {
            let n = clients.len();
            let c = &mut clients[next % n];
            match c.create_topic(topic(&name, 1)).await {
                Ok(_) => break,
                // A retry of a write that was applied before its reply was lost.
                Err(e) if e.code() == Code::AlreadyExists => break,
                Err(e) if Instant::now() > deadline => anyhow::bail!("creating {name}: {e:?}"),
                Err(_) => {
                    next += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        acked.push(name);
        progress.fetch_add(1, Ordering::SeqCst);
    }
    Ok(acked)
}

async fn clients(cluster: &MetaCluster, ids: &[u64]) -> Result<Vec<MetaServiceClient<Channel>>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(cluster.client(*id).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_stream_loses_no_acknowledged_write() -> Result<()> {
    let mut cluster = MetaCluster::start("failover", 3, &[]).await?;
    let leader = cluster.leader(T).await?;
    let mut c = cluster.client(1).await?;
    c.create_policy(policy("p")).await?;

    // A stream of creations through every node, with the leader SIGKILLed in the middle.
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(create_until(
        clients(&cluster, &[1, 2, 3]).await?,
        "t",
        0,
        150,
        progress.clone(),
    ));
    wait_for("40 acknowledged creations", T, || {
        let progress = progress.clone();
        async move { Ok((progress.load(Ordering::SeqCst) >= 40).then_some(())) }
    })
    .await?;
    let started = Instant::now();
    cluster.kill(leader);
    let acked = writer.await??;
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = cluster.leader_among(&survivors, T).await?;
    assert_ne!(new_leader, leader, "the killed node cannot still lead");
    eprintln!(
        "failover and the remaining writes took {:?}",
        started.elapsed()
    );

    // Every acknowledged creation is on every survivor.
    for id in &survivors {
        let mut c = cluster.client(*id).await?;
        let names = topic_names(&mut c, false).await?;
        let missing: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks acknowledged topics {missing:?}"
        );
    }

    // The killed node restarts and catches up.
    cluster.restart(leader)?;
    cluster.wait_ready(leader, T).await?;
    let c = cluster.client(leader).await?;
    wait_for("the restarted node to catch up", T, || {
        let mut c = c.clone();
        let acked = &acked;
        async move {
            let names = topic_names(&mut c, true).await?;
            Ok(acked.iter().all(|n| names.contains(n)).then_some(()))
        }
    })
    .await?;
    cluster.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_from_a_snapshot() -> Result<()> {
    let dir = e2e::harness::TestDir::new("snapcfg");
    dir.pass();
    let config = dir.path().join("meta.yaml");
    std::fs::write(
        &config,
        "raft:\n  snapshot_logs: 50\n  logs_kept_after_snapshot: 10\n",
    )?;
    let config = config.display().to_string();
    let mut cluster = MetaCluster::start("snapshot", 3, &["--config", &config]).await?;
    let leader = cluster.leader(T).await?;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    let mut c = cluster.client(leader).await?;
    c.create_policy(policy("p")).await?;

    cluster.kill(victim);
    cluster.wipe(victim)?;
    let acked = create_until(
        clients(&cluster, &others).await?,
        "s",
        0,
        200,
        Arc::default(),
    )
    .await?;
    wait_for(
        "the leader to purge its log behind a snapshot",
        T,
        || async {
            let j = cluster.cluster_json(leader)?;
            Ok((j["purged_index"].as_u64().unwrap_or(0) > 0).then_some(()))
        },
    )
    .await?;

    cluster.restart(victim)?;
    let v = cluster.client(victim).await?;
    wait_for("the wiped node to hold every topic", T, || {
        let mut v = v.clone();
        let acked = &acked;
        async move {
            let names = topic_names(&mut v, true).await?;
            Ok(acked.iter().all(|n| names.contains(n)).then_some(()))
        }
    })
    .await?;
    let j = cluster.cluster_json(victim)?;
    assert!(
        j["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "the wiped node should have installed a snapshot: {j}"
    );
    cluster.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_whole_cluster_keeps_all_state() -> Result<()> {
    let mut cluster = MetaCluster::start("restart", 3, &[]).await?;
    cluster.leader(T).await?;
    let mut c = cluster.client(2).await?;
    c.create_policy(policy("p")).await?;
    let mut t = topic("events", 2);
    t.mqtt_filter = "sensors/#".into();
    t.kafka_name = "sensor-events".into();
    c.create_topic(t).await?;
    c.commit_offsets(CommitOffsetsRequest {
        group: "g1".into(),
        offsets: vec![PartitionOffset {
            topic: "events".into(),
            partition: 1,
            offset: 42,
            metadata: "m".into(),
            ..Default::default()
        }],
    })
    .await?;
    c.create_user(CreateUserRequest {
        name: "alice".into(),
        password: "wonderland".into(),
        superuser: false,
    })
    .await?;
    c.kv_put(KvPutRequest {
        key: "config/x".into(),
        value: b"1".to_vec().into(),
        expected_revision: None,
    })
    .await?;
    let ids = c
        .allocate_producer_ids(AllocateProducerIdsRequest { count: 10 })
        .await?
        .into_inner();
    let before = c
        .get_cluster(GetClusterRequest {})
        .await?
        .into_inner()
        .revision;

    for id in 1..=3 {
        let status = cluster
            .node_mut(id)
            .process
            .terminate(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "node {id} did not exit cleanly on SIGTERM: {status:?}"
        );
    }
    for id in 1..=3 {
        cluster.restart(id)?;
    }
    for id in 1..=3 {
        cluster.wait_ready(id, T).await?;
    }

    let mut c = cluster.client(3).await?;
    let t = c
        .get_topic(NameRequest {
            name: "events".into(),
        })
        .await?
        .into_inner();
    let tt = t.topic.expect("topic");
    assert_eq!(
        (tt.shards, tt.mqtt_filter.as_str(), tt.kafka_name.as_str()),
        (2, "sensors/#", "sensor-events")
    );
    let offsets = c
        .fetch_offsets(FetchOffsetsRequest {
            group: "g1".into(),
            partitions: vec![],
        })
        .await?
        .into_inner()
        .offsets;
    assert_eq!(offsets.len(), 1);
    assert_eq!((offsets[0].offset, offsets[0].metadata.as_str()), (42, "m"));
    let auth = c
        .authenticate(AuthenticateRequest {
            name: "alice".into(),
            password: "wonderland".into(),
        })
        .await?
        .into_inner();
    assert!(auth.ok, "alice's password must still verify");
    let bad = c
        .authenticate(AuthenticateRequest {
            name: "alice".into(),
            password: "wrong".into(),
        })
        .await?
        .into_inner();
    assert!(!bad.ok, "a wrong password must not verify");
    let kv = c
        .kv_get(KvGetRequest {
            key: "config/x".into(),
        })
        .await?
        .into_inner();
    assert!(kv.found && kv.value.as_ref() == b"1");
    let after_ids = c
        .allocate_producer_ids(AllocateProducerIdsRequest { count: 1 })
        .await?
        .into_inner();
    assert!(
        after_ids.first_id >= ids.first_id + 10,
        "producer ids were reused: {ids:?} then {after_ids:?}"
    );
    let after = c
        .get_cluster(GetClusterRequest {})
        .await?
        .into_inner()
        .revision;
    assert!(
        after >= before,
        "revision went back from {before} to {after}"
    );
    cluster.pass();
    Ok(())
}

async fn next_events(
    stream: &mut tonic::Streaming<WatchResponse>,
    want: usize,
) -> Result<Vec<WatchEvent>> {
    let mut events = Vec::new();
    let deadline = Instant::now() + T;
    while events.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out with {} of {want} events: {events:?}",
                    events.len()
                )
            })??
            .ok_or_else(|| anyhow::anyhow!("watch stream ended"))?;
        assert!(!msg.compacted, "unexpected compaction");
        events.extend(msg.events);
    }
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_change_in_order_and_resumes_after_reconnecting() -> Result<()> {
    let dir = e2e::harness::TestDir::new("watchcfg");
    dir.pass();
    let config = dir.path().join("meta.yaml");
    std::fs::write(&config, "raft:\n  watch_history: 50\n")?;
    let config = config.display().to_string();
    let cluster = MetaCluster::start("watch", 3, &["--config", &config]).await?;
    let leader = cluster.leader(T).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("follower");
    let mut writer = cluster.client(leader).await?;
    writer.create_policy(policy("p")).await?;

    // Watch topics on a follower, from now on.
    let mut w = cluster.client(follower).await?;
    let mut stream = w
        .watch(WatchRequest {
            prefix: "topics/".into(),
            from_revision: 0,
        })
        .await?
        .into_inner();
    for i in 0..20 {
        writer.create_topic(topic(&format!("w-{i:02}"), 2)).await?;
    }
    writer
        .delete_topic(NameRequest {
            name: "w-00".into(),
        })
        .await?;
    let events = next_events(&mut stream, 21).await?;
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert!(
        revisions.windows(2).all(|p| p[0] < p[1]),
        "revisions out of order: {revisions:?}"
    );
    let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
    let mut expected: Vec<String> = (0..20).map(|i| format!("topics/w-{i:02}")).collect();
    expected.push("topics/w-00".into());
    assert_eq!(keys, expected);
    assert_eq!(events[20].kind, EventKind::Delete as i32);
    let decoded = Topic::decode_from(&events[1].value)?;
    assert_eq!(decoded.name, "w-01");
    let last = *revisions.last().expect("events");
    drop(stream);

    // Changes made while disconnected are replayed on reconnect, from the next revision.
    for i in 20..30 {
        writer.create_topic(topic(&format!("w-{i:02}"), 1)).await?;
    }
    let mut stream = w
        .watch(WatchRequest {
            prefix: "topics/".into(),
            from_revision: last + 1,
        })
        .await?
        .into_inner();
    let events = next_events(&mut stream, 10).await?;
    let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
    let expected: Vec<String> = (20..30).map(|i| format!("topics/w-{i:02}")).collect();
    assert_eq!(
        keys, expected,
        "resumed watch must replay exactly the missed changes"
    );

    // A revision older than the retained history is answered with `compacted`.
    let mut old = w
        .watch(WatchRequest {
            prefix: String::new(),
            from_revision: 1,
        })
        .await?
        .into_inner();
    let msg = tokio::time::timeout(T, old.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("stream ended without a compacted message"))?;
    assert!(msg.compacted, "expected compacted, got {msg:?}");
    cluster.pass();
    Ok(())
}

trait DecodeFrom: Sized {
    fn decode_from(b: &[u8]) -> Result<Self>;
}

impl<M: robustmq_proto::prost::Message + Default> DecodeFrom for M {
    fn decode_from(b: &[u8]) -> Result<Self> {
        Ok(M::decode(b)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_through_the_api() -> Result<()> {
    let mut cluster = MetaCluster::start("members", 3, &[]).await?;
    let leader = cluster.leader(T).await?;
    let follower = (1..=3).find(|id| *id != leader).expect("follower");
    let mut c = cluster.client(follower).await?;
    c.create_policy(policy("p")).await?;
    c.create_topic(topic("before", 1)).await?;

    cluster.start_joiner(4)?;
    let addr = cluster.node(4).grpc.clone();
    let info = c
        .add_learner(AddLearnerRequest { node_id: 4, addr })
        .await?
        .into_inner();
    assert!(
        info.learners.iter().any(|m| m.id == 4),
        "4 is a learner: {info:?}"
    );
    let mut c4 = cluster.client(4).await?;
    wait_for("the learner to replicate", T, || {
        let mut c4 = c4.clone();
        async move {
            Ok(topic_names(&mut c4, true)
                .await?
                .contains("before")
                .then_some(()))
        }
    })
    .await?;

    let info = c
        .promote_voter(PromoteVoterRequest { node_id: 4 })
        .await?
        .into_inner();
    assert_eq!(info.voters.len(), 4, "{info:?}");
    let removed = (1..=3)
        .find(|id| *id != leader && *id != follower)
        .expect("another follower");
    let info = c
        .remove_node(RemoveNodeRequest { node_id: removed })
        .await?
        .into_inner();
    let voters: Vec<u64> = info.voters.iter().map(|m| m.id).collect();
    assert!(
        !voters.contains(&removed) && voters.contains(&4),
        "{info:?}"
    );
    assert_eq!(voters.len(), 3, "{info:?}");

    // The reshaped cluster still takes writes, on the new member too.
    c4.create_topic(topic("after", 1)).await?;
    assert!(topic_names(&mut c4, false).await?.contains("after"));
    cluster.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_session_updates_keep_each_owner_check_and_result() -> Result<()> {
    let cluster = MetaCluster::start("sessions", 1, &[]).await?;
    cluster.leader(T).await?;
    let mut c = cluster.client(1).await?;
    let session = |id: &str, expiry| Session {
        client_id: id.into(),
        owner_broker: 7,
        expiry_interval_secs: expiry,
        ..Session::default()
    };
    for id in ["a", "b"] {
        c.put_session(session(id, 60)).await?;
    }
    let update = |id: &str, owner| UpdateSessionRequest {
        session: Some(session(id, 120)),
        expected_owner: owner,
        ..Default::default()
    };
    let results = c
        .update_sessions(UpdateSessionsRequest {
            updates: vec![
                update("a", 7),
                update("b", 8),
                UpdateSessionRequest::default(),
            ],
        })
        .await?
        .into_inner()
        .results;
    let codes: Vec<Code> = results.iter().map(|r| Code::from_i32(r.code)).collect();
    assert_eq!(
        codes,
        [Code::Ok, Code::FailedPrecondition, Code::InvalidArgument],
        "{results:?}"
    );
    let expiry = |id: &'static str| {
        let mut c = c.clone();
        async move {
            Ok::<_, anyhow::Error>(
                c.get_session(NameRequest { name: id.into() })
                    .await?
                    .into_inner()
                    .expiry_interval_secs,
            )
        }
    };
    assert_eq!(expiry("a").await?, 120, "the update owned by 7 was applied");
    assert_eq!(expiry("b").await?, 60, "the one expecting owner 8 was not");

    let too_many = UpdateSessionsRequest {
        updates: vec![update("a", 7); 1025],
    };
    let e = c.update_sessions(too_many).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    cluster.pass();
    Ok(())
}
