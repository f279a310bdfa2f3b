//! Every response the coordinator builds, encoded at every version it advertises and
//! decoded back. The codec refuses some fields set at a version that lacks them and silently
//! drops others (those Kafka marks ignorable, such as instance ids before JoinGroup v5), so
//! a response must also come back equal: either way a field sent to a client that cannot
//! read it fails here rather than at the client. The scenarios fill responses as fully as
//! they get (static members, leader member lists, offsets, errors).

use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::super::SUPPORTED;
use super::*;

fn encodes<T: Encodable + Decodable + PartialEq + std::fmt::Debug>(
    api: ApiKey,
    version: i16,
    what: &str,
    resp: &T,
) {
    let mut buf = BytesMut::new();
    if let Err(e) = resp.encode(&mut buf, version) {
        panic!("{api:?} v{version} ({what}) does not encode: {e}\n{resp:?}");
    }
    let mut bytes = buf.freeze();
    let back = T::decode(&mut bytes, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version} ({what}) does not decode: {e}"));
    assert_eq!(
        &back, resp,
        "{api:?} v{version} ({what}) sets fields the version does not carry"
    );
    assert!(
        bytes.is_empty(),
        "{api:?} v{version} ({what}): bytes left over"
    );
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let &(_, lo, hi) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api as i16)
        .unwrap_or_else(|| panic!("{api:?} is not advertised"));
    lo..=hi
}

/// A group where `leader` (joining at `version`) leads and a static member joined at v9,
/// so the leader's JoinGroup answer lists an instance id; returns both JoinGroup answers
/// of the leader and the leader's member id.
async fn led_group(
    c: &Arc<GroupCoordinator>,
    group: &str,
    version: i16,
) -> (Vec<JoinGroupResponse>, String) {
    let mut answers = Vec::new();
    let mut first = c
        .join_group_from(
            join_req(group, "", None, &["range"]),
            version,
            &client("lead"),
        )
        .await;
    if version >= 4 {
        assert_eq!(first.error_code, err(ResponseError::MemberIdRequired));
        answers.push(first.clone());
        let id = first.member_id.to_string();
        first = c
            .join_group_from(
                join_req(group, &id, None, &["range"]),
                version,
                &client("lead"),
            )
            .await;
    }
    assert_eq!(first.error_code, NONE, "v{version}: {first:?}");
    answers.push(first.clone());
    let leader = first.member_id.to_string();
    let cc = c.clone();
    let g = group.to_string();
    let static_join = tokio::spawn(async move {
        cc.join_group_from(
            join_req(&g, "", Some("static-1"), &["range"]),
            9,
            &client("static"),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = c
        .join_group_from(
            join_req(group, &leader, None, &["range"]),
            version,
            &client("lead"),
        )
        .await;
    assert_eq!(again.members.len(), 2, "v{version}: {again:?}");
    answers.push(again);
    static_join.await.unwrap();
    (answers, leader)
}

#[tokio::test(start_paused = true)]
async fn every_response_round_trips_at_every_advertised_version() {
    let f = Fixture::new(0);
    let foreign = Fixture::new(0);
    foreign.set_owned(false);
    let mut covered = Vec::new();

    let api = ApiKey::JoinGroup;
    covered.push(api);
    for v in versions(api) {
        let group = format!("join-{v}");
        let (answers, _) = led_group(&f.c, &group, v).await;
        for a in &answers {
            encodes(api, v, "join answers", a);
        }
        let unknown =
            f.c.join_group_from(join_req(&group, "ghost", None, &["range"]), v, &client("x"))
                .await;
        assert_eq!(unknown.error_code, err(ResponseError::UnknownMemberId));
        encodes(api, v, "unknown member", &unknown);
        let elsewhere = foreign
            .c
            .join_group(join_req(&group, "", None, &["range"]), v)
            .await;
        encodes(api, v, "not coordinator", &elsewhere);
    }

    let api = ApiKey::SyncGroup;
    covered.push(api);
    for v in versions(api) {
        let group = format!("sync-{v}");
        let (answers, leader) = led_group(&f.c, &group, 9).await;
        let generation = answers.last().unwrap().generation_id;
        let mut req = SyncGroupRequest::default()
            .with_group_id(gid(&group))
            .with_member_id(s(&leader))
            .with_generation_id(generation)
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s(&leader))
                    .with_assignment(bytes::Bytes::from("all")),
            ]);
        if v >= 5 {
            req = req
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
        }
        let ok = f.c.sync_group(req.clone(), v).await;
        assert_eq!(ok.error_code, NONE, "v{v}: {ok:?}");
        encodes(api, v, "assignment", &ok);
        let stale =
            f.c.sync_group(req.with_generation_id(generation + 5), v)
                .await;
        encodes(api, v, "stale generation", &stale);
    }

    let api = ApiKey::Heartbeat;
    covered.push(api);
    for v in versions(api) {
        let group = format!("hb-{v}");
        let (answers, leader) = led_group(&f.c, &group, 9).await;
        let req = HeartbeatRequest::default()
            .with_group_id(gid(&group))
            .with_member_id(s(&leader))
            .with_generation_id(answers.last().unwrap().generation_id);
        encodes(api, v, "heartbeat", &f.c.heartbeat(req.clone(), v).await);
        encodes(
            api,
            v,
            "not coordinator",
            &foreign.c.heartbeat(req, v).await,
        );
    }

    let api = ApiKey::LeaveGroup;
    covered.push(api);
    for v in versions(api) {
        let group = format!("leave-{v}");
        let (_, leader) = led_group(&f.c, &group, 9).await;
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_group_instance_id(Some(s("static-1"))),
                    leave_group_request::MemberIdentity::default().with_member_id(s("ghost")),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s(&leader))
        };
        encodes(api, v, "leave", &f.c.leave_group(req.clone(), v).await);
        encodes(
            api,
            v,
            "not coordinator",
            &foreign.c.leave_group(req, v).await,
        );
    }

    let api = ApiKey::OffsetCommit;
    covered.push(api);
    for v in versions(api) {
        let group = format!("commit-{v}");
        let got = commit(&f.c, &group, "", -1, &[("orders", 0, 1), ("nope", 0, 1)]).await;
        assert_eq!(got, vec![NONE, err(ResponseError::UnknownTopicOrPartition)]);
        let req = OffsetCommitRequest::default()
            .with_group_id(gid(&group))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default(),
                    ]),
            ]);
        encodes(api, v, "commit", &f.c.offset_commit(req.clone(), v).await);
        encodes(
            api,
            v,
            "not coordinator",
            &foreign.c.offset_commit(req, v).await,
        );
    }

    let api = ApiKey::OffsetFetch;
    covered.push(api);
    commit(
        &f.c,
        "fetched",
        "",
        -1,
        &[("orders", 0, 1), ("events", 1, 2)],
    )
    .await;
    for v in versions(api) {
        let reqs = if v >= 8 {
            vec![OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(gid("fetched"))
                        .with_topics(None),
                    OffsetFetchRequestGroup::default()
                        .with_group_id(gid("fetched"))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopics::default()
                                .with_name(TopicName(s("orders")))
                                .with_partition_indexes(vec![0, 3]),
                        ])),
                ])]
        } else {
            let some = OffsetFetchRequest::default()
                .with_group_id(gid("fetched"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("orders")))
                        .with_partition_indexes(vec![0, 3]),
                ]));
            let mut reqs = vec![some];
            if v >= 2 {
                reqs.push(
                    OffsetFetchRequest::default()
                        .with_group_id(gid("fetched"))
                        .with_topics(None),
                );
            }
            reqs
        };
        for req in reqs {
            let got = f.c.offset_fetch(req.clone(), v).await;
            encodes(api, v, "fetch", &got);
            encodes(
                api,
                v,
                "not coordinator",
                &foreign.c.offset_fetch(req, v).await,
            );
        }
    }

    let api = ApiKey::ListGroups;
    covered.push(api);
    for v in versions(api) {
        let got = f.c.list_groups(ListGroupsRequest::default(), v).await;
        assert!(!got.groups.is_empty());
        encodes(api, v, "list", &got);
    }

    let api = ApiKey::DescribeGroups;
    covered.push(api);
    let (_, leader) = led_group(&f.c, "described", 9).await;
    sync(&f.c, "described", &leader, 2, &[(&leader, "x")]).await;
    for v in versions(api) {
        let req = DescribeGroupsRequest::default().with_groups(vec![
            gid("described"),
            gid("fetched"),
            gid("unknown"),
            gid(""),
        ]);
        let got = f.c.describe_groups(req.clone(), v).await;
        assert_eq!(got.groups[0].members.len(), 2);
        encodes(api, v, "describe", &got);
        encodes(
            api,
            v,
            "not coordinator",
            &foreign.c.describe_groups(req, v).await,
        );
    }

    let api = ApiKey::DeleteGroups;
    covered.push(api);
    for v in versions(api) {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            gid("described"),
            gid("unknown"),
            gid(""),
        ]);
        encodes(api, v, "delete", &f.c.delete_groups(req, v).await);
    }

    for &(key, _, _) in SUPPORTED {
        assert!(
            covered.iter().any(|a| *a as i16 == key),
            "API key {key} is advertised but has no encoding scenario"
        );
    }
}
