//! Coordinator tests through its public methods, with a [`MemoryOffsetStore`] and paused
//! tokio time (timeouts of seconds cost nothing): clients are simulated as tasks that send
//! the requests a Kafka consumer sends.

mod admin;
mod encode;
mod membership;
mod offsets;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{ClientInfo, GroupCoordinator, GroupSettings, MemoryOffsetStore};

pub(super) const NONE: i16 = 0;
pub(super) const SESSION_MS: i32 = 10_000;
pub(super) const REBALANCE_MS: i32 = 30_000;

pub(super) fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

pub(super) fn gid(x: &str) -> GroupId {
    GroupId(s(x))
}

pub(super) fn err(e: ResponseError) -> i16 {
    e.code()
}

pub(super) struct Fixture {
    pub c: Arc<GroupCoordinator>,
    pub owned: Arc<AtomicBool>,
}

impl Fixture {
    /// A coordinator that owns every group while `owned` is true, over a store that knows
    /// topics `orders` (4 partitions) and `events` (2).
    pub fn new(initial_rebalance_delay_ms: u64) -> Self {
        let store = Arc::new(MemoryOffsetStore::with_topics(&[
            ("orders", 4),
            ("events", 2),
        ]));
        let owned = Arc::new(AtomicBool::new(true));
        let flag = owned.clone();
        let settings = GroupSettings {
            initial_rebalance_delay_ms,
            ..GroupSettings::default()
        };
        let c = GroupCoordinator::with_settings(
            store,
            Arc::new(move |_: &str| flag.load(Ordering::SeqCst)),
            settings,
        );
        Fixture { c, owned }
    }

    pub fn set_owned(&self, owned: bool) {
        self.owned.store(owned, Ordering::SeqCst);
    }
}

pub(super) fn join_req(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    protocols: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(Bytes::from(format!("{p}-subscription")))
                })
                .collect(),
        )
}

pub(super) fn client(id: &str) -> ClientInfo {
    ClientInfo {
        client_id: id.to_string(),
        client_host: "/127.0.0.1".to_string(),
    }
}

/// A dynamic consumer's JoinGroup at v9: the MEMBER_ID_REQUIRED round trip, then the join.
pub(super) async fn join_new(
    c: &GroupCoordinator,
    group: &str,
    client_id: &str,
) -> JoinGroupResponse {
    let first = c
        .join_group_from(join_req(group, "", None, &["range"]), 9, &client(client_id))
        .await;
    assert_eq!(
        first.error_code,
        err(ResponseError::MemberIdRequired),
        "first join: {first:?}"
    );
    assert!(
        first.member_id.starts_with(&format!("{client_id}-")),
        "member id {:?}",
        first.member_id
    );
    c.join_group_from(
        join_req(group, &first.member_id, None, &["range"]),
        9,
        &client(client_id),
    )
    .await
}

/// A known member's JoinGroup at v9.
pub(super) async fn rejoin(
    c: &GroupCoordinator,
    group: &str,
    member_id: &str,
) -> JoinGroupResponse {
    c.join_group_from(
        join_req(group, member_id, None, &["range"]),
        9,
        &client("rejoin"),
    )
    .await
}

pub(super) async fn sync(
    c: &GroupCoordinator,
    group: &str,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        );
    c.sync_group(req, 5).await
}

pub(super) async fn heartbeat(
    c: &GroupCoordinator,
    group: &str,
    member_id: &str,
    generation: i32,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_generation_id(generation);
    c.heartbeat(req, 4).await.error_code
}

pub(super) async fn leave(
    c: &GroupCoordinator,
    group: &str,
    members: &[(&str, Option<&str>)],
) -> LeaveGroupResponse {
    let req = LeaveGroupRequest::default()
        .with_group_id(gid(group))
        .with_members(
            members
                .iter()
                .map(|(m, i)| {
                    MemberIdentity::default()
                        .with_member_id(s(m))
                        .with_group_instance_id(i.map(s))
                })
                .collect(),
        );
    c.leave_group(req, 5).await
}

/// Commits `offset` on every listed `(topic, partition)`; the error code per partition in
/// request order.
pub(super) async fn commit(
    c: &GroupCoordinator,
    group: &str,
    member_id: &str,
    generation: i32,
    partitions: &[(&str, i32, i64)],
) -> Vec<i16> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for &(topic, partition, offset) in partitions {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s("m")));
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics);
    c.offset_commit(req, 8)
        .await
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v7 of `(topic, partitions)`, or of everything with None: the group error
/// and `(topic, partition, offset)` in response order.
pub(super) async fn fetch(
    c: &GroupCoordinator,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Vec<(String, i32, i64)>) {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }));
    let resp = c.offset_fetch(req, 7).await;
    let found = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.as_str().to_string(),
                    p.partition_index,
                    p.committed_offset,
                )
            })
        })
        .collect();
    (resp.error_code, found)
}

/// Members joined into one generation and synced: `(member_id, generation)` per client in
/// join order, the first being the leader. Needs an initial rebalance delay so that all
/// joins land in the first generation.
pub(super) async fn stable_group(f: &Fixture, group: &str, clients: &[&str]) -> Vec<(String, i32)> {
    let mut joins = Vec::new();
    for client_id in clients {
        let c = f.c.clone();
        let (group, client_id) = (group.to_string(), client_id.to_string());
        joins.push(tokio::spawn(async move {
            join_new(&c, &group, &client_id).await
        }));
        // Join in a known order: the first one leads.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut joined = Vec::new();
    for j in joins {
        joined.push(j.await.expect("join task"));
    }
    let generation = joined[0].generation_id;
    let leader = joined[0].member_id.to_string();
    for j in &joined {
        assert_eq!(j.error_code, NONE, "join: {j:?}");
        assert_eq!(j.generation_id, generation);
        assert_eq!(j.leader.as_str(), leader);
    }
    let ids: Vec<String> = joined.iter().map(|j| j.member_id.to_string()).collect();
    let assignments: Vec<(String, String)> = ids
        .iter()
        .map(|m| (m.clone(), format!("assigned-to-{m}")))
        .collect();
    let mut syncs = Vec::new();
    for id in ids.iter().skip(1) {
        let c = f.c.clone();
        let (group, id) = (group.to_string(), id.clone());
        syncs.push(tokio::spawn(async move {
            sync(&c, &group, &id, generation, &[]).await
        }));
    }
    let pairs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    let led = sync(&f.c, group, &leader, generation, &pairs).await;
    assert_eq!(led.error_code, NONE, "leader sync: {led:?}");
    for (s, id) in syncs.into_iter().zip(ids.iter().skip(1)) {
        let got = s.await.expect("sync task");
        assert_eq!(got.error_code, NONE, "follower sync: {got:?}");
        assert_eq!(got.assignment, Bytes::from(format!("assigned-to-{id}")));
    }
    ids.into_iter().map(|id| (id, generation)).collect()
}
