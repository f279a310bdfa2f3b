//! Coordinator tests through the public API (typed Kafka requests in, responses out),
//! with a [`MemoryOffsetStore`] and paused tokio time so that session and rebalance
//! timeouts pass instantly and deterministically.

mod admin;
mod encode;
mod membership;
mod offsets;
mod static_members;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ClientInfo, GroupConfig, GroupCoordinator, MemoryOffsetStore};

pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 30_000;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

pub fn err(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

/// A coordinator with its background task running, a store knowing topics `t` (4
/// partitions) and `u` (2), and a switch that moves groups away from this broker.
pub struct Harness {
    pub c: Arc<GroupCoordinator>,
    pub store: Arc<MemoryOffsetStore>,
    foreign: Arc<RwLock<HashSet<String>>>,
    cancel: CancellationToken,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    pub fn with_config(cfg: GroupConfig) -> Self {
        let store = Arc::new(MemoryOffsetStore::new([("t", 4), ("u", 2)]));
        let foreign: Arc<RwLock<HashSet<String>>> = Arc::default();
        let f = foreign.clone();
        let c = GroupCoordinator::with_config(
            store.clone(),
            Arc::new(move |g: &str| !f.read().unwrap().contains(g)),
            cfg,
        );
        let cancel = CancellationToken::new();
        tokio::spawn(c.clone().run(cancel.clone()));
        Harness {
            c,
            store,
            foreign,
            cancel,
        }
    }

    /// From now on another broker coordinates `group` (or this one again).
    pub fn set_foreign(&self, group: &str, foreign: bool) {
        let mut f = self.foreign.write().unwrap();
        if foreign {
            f.insert(group.to_string());
        } else {
            f.remove(group);
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn protocols(metadata: &str) -> Vec<JoinGroupRequestProtocol> {
    ["range", "roundrobin"]
        .into_iter()
        .map(|name| {
            JoinGroupRequestProtocol::default()
                .with_name(s(name))
                .with_metadata(Bytes::from(format!("{name}:{metadata}")))
        })
        .collect()
}

pub fn join_req(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(protocols(member))
}

pub fn client(id: &str) -> ClientInfo {
    ClientInfo::new(Some(id), "127.0.0.1:40000".parse().unwrap())
}

/// Starts a JoinGroup that may park; the handle yields its response.
pub fn spawn_join(
    c: &Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> JoinHandle<JoinGroupResponse> {
    let c = c.clone();
    let info = client(client_id);
    tokio::spawn(async move { c.join_group_from(req, version, info).await })
}

/// A dynamic member's v9 join: MEMBER_ID_REQUIRED, then the rejoin with that id, which
/// parks until the join phase ends.
pub fn spawn_join_dynamic(
    c: &Arc<GroupCoordinator>,
    group: &str,
    client_id: &str,
) -> JoinHandle<JoinGroupResponse> {
    let c = c.clone();
    let group = group.to_string();
    let info = client(client_id);
    tokio::spawn(async move {
        let first = c
            .join_group_from(join_req(&group, "", None), 9, info.clone())
            .await;
        assert_eq!(err(first.error_code), Some(ResponseError::MemberIdRequired));
        assert!(
            first.member_id.starts_with(&format!("{}-", info.client_id)),
            "member id {:?} should start with the client id",
            first.member_id
        );
        c.join_group_from(join_req(&group, &first.member_id, None), 9, info)
            .await
    })
}

/// Rejoin of a known member (after REBALANCE_IN_PROGRESS).
pub fn spawn_rejoin(
    c: &Arc<GroupCoordinator>,
    group: &str,
    member: &str,
) -> JoinHandle<JoinGroupResponse> {
    spawn_join(c, join_req(group, member, None), 9, "rejoin")
}

pub fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
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
        )
}

pub fn spawn_sync(
    c: &Arc<GroupCoordinator>,
    req: SyncGroupRequest,
) -> JoinHandle<SyncGroupResponse> {
    let c = c.clone();
    tokio::spawn(async move { c.sync_group(req, 5).await })
}

pub async fn heartbeat(
    c: &GroupCoordinator,
    group: &str,
    member: &str,
    generation: i32,
) -> Option<ResponseError> {
    let r = c
        .heartbeat(
            HeartbeatRequest::default()
                .with_group_id(gid(group))
                .with_member_id(s(member))
                .with_generation_id(generation),
            4,
        )
        .await;
    err(r.error_code)
}

/// The members of a formed group: ids in join order (leader first) and the generation.
pub struct Formed {
    pub members: Vec<String>,
    pub generation: i32,
}

/// Joins `n` dynamic members to `group` and syncs them, the leader assigning `a-{i}` to
/// the i-th member of its member list.
pub async fn form_group(h: &Harness, group: &str, n: usize) -> Formed {
    let joins: Vec<_> = (0..n)
        .map(|i| spawn_join_dynamic(&h.c, group, &format!("client{i}")))
        .collect();
    let mut responses = Vec::new();
    for j in joins {
        let r = j.await.unwrap();
        assert_eq!(err(r.error_code), None, "join failed: {r:?}");
        responses.push(r);
    }
    sync_all(h, group, responses).await
}

/// Syncs every member from its JoinGroup response; asserts each got its assignment.
pub async fn sync_all(h: &Harness, group: &str, responses: Vec<JoinGroupResponse>) -> Formed {
    let leader = responses[0].leader.to_string();
    let generation = responses[0].generation_id;
    let leader_resp = responses
        .iter()
        .find(|r| r.member_id == responses[0].leader)
        .expect("the leader is among the joiners");
    let members: Vec<String> = leader_resp
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    let assignments: Vec<(String, String)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), format!("a-{i}")))
        .collect();
    let mut syncs = Vec::new();
    // Followers first: they must wait for the leader's assignments.
    for r in responses.iter().filter(|r| r.member_id.as_str() != leader) {
        syncs.push((
            r.member_id.to_string(),
            spawn_sync(&h.c, sync_req(group, &r.member_id, generation, &[])),
        ));
    }
    tokio::task::yield_now().await;
    let pairs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    syncs.push((
        leader.clone(),
        spawn_sync(&h.c, sync_req(group, &leader, generation, &pairs)),
    ));
    for (member, handle) in syncs {
        let r = handle.await.unwrap();
        assert_eq!(err(r.error_code), None, "sync of {member} failed: {r:?}");
        let i = members.iter().position(|m| *m == member).unwrap();
        assert_eq!(
            r.assignment,
            Bytes::from(format!("a-{i}")),
            "assignment of {member}"
        );
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    }
    Formed {
        members,
        generation,
    }
}

pub async fn describe(c: &GroupCoordinator, group: &str, version: i16) -> DescribeGroupsResponse {
    c.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
        version,
    )
    .await
}

pub async fn leave(
    c: &GroupCoordinator,
    group: &str,
    members: &[(&str, Option<&str>)],
) -> LeaveGroupResponse {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    c.leave_group(
        LeaveGroupRequest::default()
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
            ),
        5,
    )
    .await
}
