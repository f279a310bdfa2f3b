//! OffsetCommit and OffsetFetch: simple and member commits, unknown partitions, fetch of
//! everything or of named partitions, the v8 multi-group form, store failures.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;

use super::*;

pub fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(s(&format!("m{offset}"))));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

/// Every partition's error in a commit response, in order.
pub fn commit_errors(r: &OffsetCommitResponse) -> Vec<(String, i32, Option<ResponseError>)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, err(p.error_code)))
        })
        .collect()
}

pub fn fetch_req_v7(group: &str, topics: Option<&[(&str, &[i32])]>) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }))
}

/// `(topic, partition, offset, metadata)` from a v1-7 response.
pub fn fetched(r: &OffsetFetchResponse) -> Vec<(String, i32, i64, String)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                assert_eq!(p.error_code, 0, "{p:?}");
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_deref().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn simple_commit_vs_member_commit() {
    let h = Harness::new();
    // No group held: a simple commit (generation -1, no member) is accepted.
    let r =
        h.c.offset_commit(commit_req("simple", "", -1, &[("t", 0, 5), ("t", 1, 7)]), 8)
            .await;
    assert_eq!(
        commit_errors(&r).iter().filter(|e| e.2.is_some()).count(),
        0,
        "{r:?}"
    );
    // A member commit to a group held nowhere: ILLEGAL_GENERATION, GROUP_ID_NOT_FOUND at v9.
    let r =
        h.c.offset_commit(commit_req("simple", "m-1", 3, &[("t", 0, 6)]), 8)
            .await;
    assert_eq!(
        commit_errors(&r)[0].2,
        Some(ResponseError::IllegalGeneration)
    );
    let r =
        h.c.offset_commit(commit_req("simple", "m-1", 3, &[("t", 0, 6)]), 9)
            .await;
    assert_eq!(commit_errors(&r)[0].2, Some(ResponseError::GroupIdNotFound));

    let f = form_group(&h, "g", 1).await;
    let m = &f.members[0];
    // Members own the partitions: a simple commit is refused.
    let r =
        h.c.offset_commit(commit_req("g", "", -1, &[("t", 0, 1)]), 8)
            .await;
    assert_eq!(commit_errors(&r)[0].2, Some(ResponseError::UnknownMemberId));
    let r =
        h.c.offset_commit(commit_req("g", m, f.generation - 1, &[("t", 0, 1)]), 8)
            .await;
    assert_eq!(
        commit_errors(&r)[0].2,
        Some(ResponseError::IllegalGeneration)
    );
    let r =
        h.c.offset_commit(
            commit_req("g", "m-unknown", f.generation, &[("t", 0, 1)]),
            8,
        )
        .await;
    assert_eq!(commit_errors(&r)[0].2, Some(ResponseError::UnknownMemberId));
    let r =
        h.c.offset_commit(
            commit_req("g", m, f.generation, &[("t", 0, 10), ("u", 1, 20)]),
            8,
        )
        .await;
    assert!(commit_errors(&r).iter().all(|e| e.2.is_none()), "{r:?}");
    let r = h.c.offset_fetch(fetch_req_v7("g", None), 7).await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(
        fetched(&r),
        vec![
            ("t".into(), 0, 10, "m10".into()),
            ("u".into(), 1, 20, "m20".into())
        ]
    );

    // Once the member left, simple commits are welcome again.
    leave(&h.c, "g", &[(m, None)]).await;
    let r =
        h.c.offset_commit(commit_req("g", "", -1, &[("t", 0, 11)]), 8)
            .await;
    assert_eq!(commit_errors(&r)[0].2, None);
    let r =
        h.c.offset_fetch(fetch_req_v7("g", Some(&[("t", &[0, 3])])), 7)
            .await;
    assert_eq!(
        fetched(&r),
        vec![
            ("t".into(), 0, 11, "m11".into()),
            ("t".into(), 3, -1, "".into())
        ],
        "a partition without a commit reads -1"
    );
}

#[tokio::test(start_paused = true)]
async fn commit_during_rebalance() {
    let h = Harness::new();
    let f = form_group(&h, "g", 2).await;
    // A leave starts a rebalance; until the member rejoins its generation is still valid
    // (it may commit before giving up its partitions), as in Kafka.
    leave(&h.c, "g", &[(&f.members[1], None)]).await;
    let r =
        h.c.offset_commit(
            commit_req("g", &f.members[0], f.generation, &[("t", 0, 3)]),
            8,
        )
        .await;
    assert_eq!(commit_errors(&r)[0].2, None);
    // After the join phase, before SyncGroup: REBALANCE_IN_PROGRESS.
    let r = spawn_rejoin(&h.c, "g", &f.members[0]).await.unwrap();
    let r =
        h.c.offset_commit(
            commit_req("g", &f.members[0], r.generation_id, &[("t", 0, 4)]),
            8,
        )
        .await;
    assert_eq!(
        commit_errors(&r)[0].2,
        Some(ResponseError::RebalanceInProgress)
    );
}

#[tokio::test(start_paused = true)]
async fn commit_reports_unknown_partitions_and_oversized_metadata_per_partition() {
    let h = Harness::new();
    let big = "x".repeat(5000);
    let mut req = commit_req(
        "simple",
        "",
        -1,
        &[
            ("t", 0, 1),
            ("nope", 0, 1),
            ("t", 9, 1),
            ("t", -1, 1),
            ("u", 0, 1),
        ],
    );
    req.topics[0].partitions.push(
        OffsetCommitRequestPartition::default()
            .with_partition_index(2)
            .with_committed_offset(1)
            .with_committed_metadata(Some(s(&big))),
    );
    let r = h.c.offset_commit(req, 8).await;
    let errors = commit_errors(&r);
    let by = |t: &str, p: i32| errors.iter().find(|e| e.0 == t && e.1 == p).unwrap().2;
    assert_eq!(by("t", 0), None);
    assert_eq!(by("u", 0), None);
    assert_eq!(by("nope", 0), Some(ResponseError::UnknownTopicOrPartition));
    assert_eq!(by("t", 9), Some(ResponseError::UnknownTopicOrPartition));
    assert_eq!(by("t", -1), Some(ResponseError::UnknownTopicOrPartition));
    assert_eq!(by("t", 2), Some(ResponseError::OffsetMetadataTooLarge));
    let r = h.c.offset_fetch(fetch_req_v7("simple", None), 7).await;
    let committed: Vec<(String, i32)> = fetched(&r).into_iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(committed, vec![("t".to_string(), 0), ("u".to_string(), 0)]);
}

#[tokio::test(start_paused = true)]
async fn fetch_in_the_multi_group_form() {
    let h = Harness::new();
    h.c.offset_commit(commit_req("g1", "", -1, &[("t", 0, 1), ("t", 1, 2)]), 8)
        .await;
    h.c.offset_commit(commit_req("g2", "", -1, &[("u", 1, 9)]), 8)
        .await;
    h.set_foreign("g3", true);
    let group = |id: &str, topics: Option<Vec<OffsetFetchRequestTopics>>| {
        OffsetFetchRequestGroup::default()
            .with_group_id(gid(id))
            .with_topics(topics)
    };
    let req = OffsetFetchRequest::default().with_groups(vec![
        group("g1", None),
        group(
            "g2",
            Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("u")))
                    .with_partition_indexes(vec![0, 1]),
            ]),
        ),
        group("g3", None),
        group("", None),
    ]);
    let r = h.c.offset_fetch(req, 9).await;
    assert_eq!(r.groups.len(), 4);
    let g1 = &r.groups[0];
    assert_eq!((g1.group_id.0.as_str(), g1.error_code), ("g1", 0));
    let offsets: Vec<(i32, i64)> = g1.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(offsets, vec![(0, 1), (1, 2)]);
    let g2: Vec<(i32, i64)> = r.groups[1].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(g2, vec![(0, -1), (1, 9)]);
    assert_eq!(
        err(r.groups[2].error_code),
        Some(ResponseError::NotCoordinator)
    );
    assert_eq!(
        err(r.groups[3].error_code),
        Some(ResponseError::InvalidGroupId)
    );
}

#[tokio::test(start_paused = true)]
async fn store_failures_surface_as_coordinator_not_available() {
    let h = Harness::new();
    h.store.set_unavailable(true);
    let r =
        h.c.offset_commit(commit_req("g", "", -1, &[("t", 0, 1), ("t", 1, 1)]), 8)
            .await;
    assert!(
        commit_errors(&r)
            .iter()
            .all(|e| e.2 == Some(ResponseError::CoordinatorNotAvailable))
    );
    let r = h.c.offset_fetch(fetch_req_v7("g", None), 7).await;
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    // v1 has no group-level error code: each partition carries it.
    let r =
        h.c.offset_fetch(fetch_req_v7("g", Some(&[("t", &[0])])), 1)
            .await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(
        err(r.topics[0].partitions[0].error_code),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    let r = h.c.list_groups(ListGroupsRequest::default(), 5).await;
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    h.store.set_unavailable(false);
    let r = h.c.offset_fetch(fetch_req_v7("g", None), 7).await;
    assert_eq!(err(r.error_code), None);
}
