//! Every advertised version of every group API, end to end: a request valid at that
//! version (it goes through the wire first), the coordinator's response encoded at that
//! version and decoded back unchanged. `kafka-protocol` refuses to encode a field the
//! version lacks, and the round trip catches a value the version cannot carry, so a
//! version/field mismatch fails here rather than in a client.
//!
//! `kafka-protocol` does encode (and decode) null in a string that is only nullable from
//! a later version, which Java clients reject; the one such field in these responses,
//! JoinGroup's protocol name (nullable from v7), is checked by [`check_join`].

use std::fmt::Debug;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message};

use super::offsets::{commit_req, fetch_req_v7};
use super::*;
use crate::kafka::group::SUPPORTED;

fn wire<T: Encodable + Decodable>(req: T, v: i16, what: &str) -> T {
    let mut buf = BytesMut::new();
    req.encode(&mut buf, v)
        .unwrap_or_else(|e| panic!("test bug: {what} request invalid at v{v}: {e}"));
    T::decode(&mut buf.freeze(), v).unwrap()
}

fn check<T: Encodable + Decodable + PartialEq + Debug>(resp: &T, v: i16, what: &str) {
    let mut buf = BytesMut::new();
    resp.encode(&mut buf, v)
        .unwrap_or_else(|e| panic!("{what} response does not encode at v{v}: {e}\n{resp:?}"));
    let back = T::decode(&mut buf.freeze(), v)
        .unwrap_or_else(|e| panic!("{what} response does not decode at v{v}: {e}"));
    assert_eq!(&back, resp, "{what} response changes on the wire at v{v}");
}

fn check_join(resp: &JoinGroupResponse, v: i16, what: &str) {
    assert!(
        v >= 7 || resp.protocol_name.is_some(),
        "{what}: null protocol name at v{v}, where it is not nullable"
    );
    check(resp, v, what);
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api as i16)
        .unwrap_or_else(|| panic!("{api:?} not advertised"));
    *min..=*max
}

#[test]
fn advertised_versions_cover_what_clients_send_and_what_kafka_protocol_knows() {
    let want: &[(ApiKey, i16, i16, i16, i16)] = &[
        // (api, min, max, codec min, codec max)
        (
            ApiKey::JoinGroup,
            0,
            9,
            JoinGroupRequest::VERSIONS.min,
            JoinGroupRequest::VERSIONS.max,
        ),
        (
            ApiKey::SyncGroup,
            0,
            5,
            SyncGroupRequest::VERSIONS.min,
            SyncGroupRequest::VERSIONS.max,
        ),
        (
            ApiKey::Heartbeat,
            0,
            4,
            HeartbeatRequest::VERSIONS.min,
            HeartbeatRequest::VERSIONS.max,
        ),
        (
            ApiKey::LeaveGroup,
            0,
            5,
            LeaveGroupRequest::VERSIONS.min,
            LeaveGroupRequest::VERSIONS.max,
        ),
        (
            ApiKey::OffsetCommit,
            2,
            9,
            OffsetCommitRequest::VERSIONS.min,
            OffsetCommitRequest::VERSIONS.max,
        ),
        (
            ApiKey::OffsetFetch,
            1,
            9,
            OffsetFetchRequest::VERSIONS.min,
            OffsetFetchRequest::VERSIONS.max,
        ),
        (
            ApiKey::ListGroups,
            0,
            5,
            ListGroupsRequest::VERSIONS.min,
            ListGroupsRequest::VERSIONS.max,
        ),
        (
            ApiKey::DescribeGroups,
            0,
            6,
            DescribeGroupsRequest::VERSIONS.min,
            DescribeGroupsRequest::VERSIONS.max,
        ),
        (
            ApiKey::DeleteGroups,
            0,
            2,
            DeleteGroupsRequest::VERSIONS.min,
            DeleteGroupsRequest::VERSIONS.max,
        ),
    ];
    assert_eq!(SUPPORTED.len(), want.len());
    for (api, min, max, cmin, cmax) in want {
        assert_eq!(versions(*api), *min..=*max, "{api:?}");
        assert!(
            cmin <= min && max <= cmax,
            "{api:?} outside what kafka-protocol decodes"
        );
    }
}

/// A request through the wire at `v`, then the coordinator.
async fn join_at(
    c: &Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    v: i16,
    who: &str,
) -> JoinGroupResponse {
    let req = wire(strip_join(req, v), v, "JoinGroup");
    c.join_group_from(req, v, client(who)).await
}

fn strip_join(mut req: JoinGroupRequest, v: i16) -> JoinGroupRequest {
    if v < 1 {
        req.rebalance_timeout_ms = -1;
    }
    if v < 5 {
        req.group_instance_id = None;
    }
    req
}

#[tokio::test(start_paused = true)]
async fn join_group_every_version() {
    for v in versions(ApiKey::JoinGroup) {
        let h = Harness::new();
        let r = join_at(
            &h.c,
            join_req("g", "", None).with_session_timeout_ms(1),
            v,
            "c",
        )
        .await;
        assert_eq!(
            err(r.error_code),
            Some(ResponseError::InvalidSessionTimeout)
        );
        check_join(&r, v, "JoinGroup error");

        // The member at version v joins first (so it leads), a v9 static member second:
        // the leader's member list carries an instance id that v < 5 must not show.
        let mut member = String::new();
        if v >= 4 {
            let r = join_at(&h.c, join_req("g", "", None), v, "c").await;
            assert_eq!(err(r.error_code), Some(ResponseError::MemberIdRequired));
            check_join(&r, v, "JoinGroup MEMBER_ID_REQUIRED");
            member = r.member_id.to_string();
        }
        let c = h.c.clone();
        let req = join_req("g", &member, None);
        let tested = tokio::spawn(async move { join_at(&c, req, v, "c").await });
        tokio::task::yield_now().await;
        let other = spawn_join(&h.c, join_req("g", "", Some("s")), 9, "s");
        let (r, other) = (tested.await.unwrap(), other.await.unwrap());
        assert_eq!(err(r.error_code), None, "v{v}: {r:?}");
        assert_eq!(
            r.leader, r.member_id,
            "v{v}: the member at v{v} should lead"
        );
        assert_eq!(r.members.len(), 2);
        check_join(&r, v, "JoinGroup leader");
        sync_all(&h, "g", vec![r.clone(), other]).await;

        if v >= 5 {
            // A static member restarting at version v: no rebalance, skip_assignment at v9.
            let r = join_at(&h.c, join_req("g", "", Some("s")), v, "s2").await;
            assert_eq!(err(r.error_code), None);
            assert!(
                !r.skip_assignment,
                "the restarted static member is a follower"
            );
            check_join(&r, v, "JoinGroup static follower restart");
        }

        h.set_foreign("g", true);
        let r = join_at(&h.c, join_req("g", "", None), v, "c").await;
        assert_eq!(err(r.error_code), Some(ResponseError::NotCoordinator));
        check_join(&r, v, "JoinGroup NOT_COORDINATOR");
    }

    // skip_assignment (v9 only): a static leader restarting.
    let h = Harness::new();
    let a = spawn_join(&h.c, join_req("g", "", Some("a")), 9, "a");
    tokio::task::yield_now().await;
    let b = spawn_join(&h.c, join_req("g", "", Some("b")), 9, "b");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    sync_all(&h, "g", vec![a.clone(), b]).await;
    let r = join_at(&h.c, join_req("g", "", Some("a")), 9, "a2").await;
    assert!(r.skip_assignment);
    check_join(&r, 9, "JoinGroup skip_assignment");
    for v in 5..9 {
        let r = join_at(&h.c, join_req("g", "", Some("a")), v, "a3").await;
        assert!(!r.skip_assignment && r.members.is_empty());
        check_join(&r, v, "JoinGroup static leader restart, old client");
    }
}

fn strip_sync(mut req: SyncGroupRequest, v: i16) -> SyncGroupRequest {
    if v < 3 {
        req.group_instance_id = None;
    }
    if v < 5 {
        req.protocol_type = None;
        req.protocol_name = None;
    }
    req
}

#[tokio::test(start_paused = true)]
async fn sync_group_and_heartbeat_every_version() {
    for v in versions(ApiKey::SyncGroup) {
        let h = Harness::new();
        let a = spawn_join_dynamic(&h.c, "g", "a");
        let b = spawn_join_dynamic(&h.c, "g", "b");
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (leader, follower) = if a.leader == a.member_id {
            (a, b)
        } else {
            (b, a)
        };
        let gen_ = leader.generation_id;

        let bad = wire(
            strip_sync(sync_req("g", &leader.member_id, gen_ + 5, &[]), v),
            v,
            "SyncGroup",
        );
        let r = h.c.sync_group(bad, v).await;
        assert_eq!(err(r.error_code), Some(ResponseError::IllegalGeneration));
        check(&r, v, "SyncGroup error");

        let c = h.c.clone();
        let req = wire(
            strip_sync(sync_req("g", &follower.member_id, gen_, &[]), v),
            v,
            "SyncGroup",
        );
        let waiting = tokio::spawn(async move { c.sync_group(req, v).await });
        tokio::task::yield_now().await;
        let assignments = [
            (leader.member_id.as_str(), "x"),
            (follower.member_id.as_str(), "y"),
        ];
        let req = wire(
            strip_sync(sync_req("g", &leader.member_id, gen_, &assignments), v),
            v,
            "SyncGroup",
        );
        let r = h.c.sync_group(req, v).await;
        assert_eq!(
            (err(r.error_code), r.assignment.clone()),
            (None, Bytes::from("x"))
        );
        check(&r, v, "SyncGroup leader");
        let r = waiting.await.unwrap();
        assert_eq!(
            (err(r.error_code), r.assignment.clone()),
            (None, Bytes::from("y"))
        );
        check(&r, v, "SyncGroup follower");
    }

    for v in versions(ApiKey::Heartbeat) {
        let h = Harness::new();
        let f = form_group(&h, "g", 1).await;
        for (member, generation, want) in [
            (f.members[0].as_str(), f.generation, None),
            (
                f.members[0].as_str(),
                f.generation + 1,
                Some(ResponseError::IllegalGeneration),
            ),
            ("nobody", f.generation, Some(ResponseError::UnknownMemberId)),
        ] {
            let req = HeartbeatRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(member))
                .with_generation_id(generation);
            let r = h.c.heartbeat(wire(req, v, "Heartbeat"), v).await;
            assert_eq!(err(r.error_code), want);
            check(&r, v, "Heartbeat");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn leave_group_every_version() {
    for v in versions(ApiKey::LeaveGroup) {
        let h = Harness::new();
        let f = form_group(&h, "g", 2).await;
        let req = if v < 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&f.members[1]))
        } else {
            let reason = if v >= 5 {
                Some(s("shutting down"))
            } else {
                None
            };
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_members(vec![
                    MemberIdentity::default()
                        .with_member_id(s(&f.members[1]))
                        .with_reason(reason.clone()),
                    MemberIdentity::default()
                        .with_member_id(s(""))
                        .with_group_instance_id(Some(s("zzz")))
                        .with_reason(reason),
                ])
        };
        let r = h.c.leave_group(wire(req, v, "LeaveGroup"), v).await;
        assert_eq!(err(r.error_code), None);
        check(&r, v, "LeaveGroup");
        let unknown = LeaveGroupRequest::default().with_group_id(gid("nowhere"));
        let unknown = if v < 3 {
            unknown.with_member_id(s("m"))
        } else {
            unknown.with_members(vec![MemberIdentity::default().with_member_id(s("m"))])
        };
        let r = h.c.leave_group(wire(unknown, v, "LeaveGroup"), v).await;
        assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
        check(&r, v, "LeaveGroup error");
    }
}

#[tokio::test(start_paused = true)]
async fn offset_commit_and_fetch_every_version() {
    for v in versions(ApiKey::OffsetCommit) {
        let h = Harness::new();
        let mut req = commit_req("simple", "", -1, &[("t", 0, 5), ("nope", 0, 1)]);
        if v >= 6 {
            req.topics[0].partitions[0].committed_leader_epoch = 3;
        }
        let r = h.c.offset_commit(wire(req, v, "OffsetCommit"), v).await;
        assert_eq!(err(r.topics[0].partitions[0].error_code), None);
        assert_eq!(
            err(r.topics[1].partitions[0].error_code),
            Some(ResponseError::UnknownTopicOrPartition)
        );
        check(&r, v, "OffsetCommit");
        let f = form_group(&h, "g", 1).await;
        let req = commit_req("g", &f.members[0], f.generation, &[("t", 1, 9)]);
        let r = h.c.offset_commit(wire(req, v, "OffsetCommit"), v).await;
        assert_eq!(err(r.topics[0].partitions[0].error_code), None);
        check(&r, v, "OffsetCommit member");
    }

    let h = Harness::new();
    let mut req = commit_req("g", "", -1, &[("t", 0, 5)]);
    req.topics[0].partitions[0].committed_leader_epoch = 3;
    h.c.offset_commit(req, 9).await;
    h.set_foreign("away", true);
    for v in versions(ApiKey::OffsetFetch) {
        let named: &[(&str, &[i32])] = &[("t", &[0, 1])];
        let reqs: Vec<(OffsetFetchRequest, &str)> = if v >= 8 {
            let g = |id: &str, topics: Option<Vec<OffsetFetchRequestTopics>>| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(id))
                    .with_topics(topics)
            };
            let topics = vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1]),
            ];
            vec![(
                OffsetFetchRequest::default().with_groups(vec![
                    g("g", None),
                    g("g", Some(topics)),
                    g("away", None),
                ]),
                "OffsetFetch groups",
            )]
        } else {
            let mut reqs = vec![
                (fetch_req_v7("g", Some(named)), "OffsetFetch named"),
                (
                    fetch_req_v7("away", Some(named)),
                    "OffsetFetch NOT_COORDINATOR",
                ),
            ];
            if v >= 2 {
                reqs.push((fetch_req_v7("g", None), "OffsetFetch all"));
            }
            reqs
        };
        for (req, what) in reqs {
            let r = h.c.offset_fetch(wire(req, v, what), v).await;
            check(&r, v, what);
            let epochs: Vec<i32> = if v >= 8 {
                r.groups[0].topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.committed_leader_epoch)
                    .collect()
            } else {
                r.topics.first().map_or(vec![], |t| {
                    t.partitions
                        .iter()
                        .map(|p| p.committed_leader_epoch)
                        .collect()
                })
            };
            if what != "OffsetFetch NOT_COORDINATOR" {
                assert_eq!(epochs[0], if v >= 5 { 3 } else { -1 }, "{what} v{v}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn list_describe_delete_every_version() {
    let h = Harness::new();
    let a = spawn_join(&h.c, join_req("live", "", Some("inst")), 9, "a")
        .await
        .unwrap();
    sync_all(&h, "live", vec![a]).await;
    h.c.offset_commit(commit_req("simple", "", -1, &[("t", 0, 1)]), 8)
        .await;
    h.set_foreign("away", true);

    for v in versions(ApiKey::ListGroups) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![s("Stable"), s("Empty")];
        }
        if v >= 5 {
            req.types_filter = vec![s("classic")];
        }
        let r = h.c.list_groups(wire(req, v, "ListGroups"), v).await;
        assert_eq!(r.groups.len(), 2, "v{v}: {r:?}");
        check(&r, v, "ListGroups");
    }
    for v in versions(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![
                gid("live"),
                gid("simple"),
                gid("none"),
                gid("away"),
                gid(""),
            ])
            .with_include_authorized_operations(v >= 3);
        let r = h.c.describe_groups(wire(req, v, "DescribeGroups"), v).await;
        assert_eq!(r.groups[0].members.len(), 1);
        assert_eq!(r.groups[0].members[0].group_instance_id.is_some(), v >= 4);
        check(&r, v, "DescribeGroups");
    }
    for v in versions(ApiKey::DeleteGroups) {
        h.c.offset_commit(commit_req("simple", "", -1, &[("t", 0, 1)]), 8)
            .await;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            gid("live"),
            gid("simple"),
            gid("none"),
            gid("away"),
        ]);
        let r = h.c.delete_groups(wire(req, v, "DeleteGroups"), v).await;
        let codes: Vec<Option<ResponseError>> =
            r.results.iter().map(|x| err(x.error_code)).collect();
        assert_eq!(
            codes,
            vec![
                Some(ResponseError::NonEmptyGroup),
                None,
                Some(ResponseError::GroupIdNotFound),
                Some(ResponseError::NotCoordinator)
            ]
        );
        check(&r, v, "DeleteGroups");
    }
}
