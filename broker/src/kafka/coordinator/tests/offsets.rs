//! OffsetCommit and OffsetFetch.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};

use super::*;

#[tokio::test(start_paused = true)]
async fn simple_commits_need_an_empty_group_and_member_commits_a_current_generation() {
    let f = Fixture::new(0);
    // No group at all: an admin tool's commit (generation -1, no member) is taken.
    assert_eq!(
        commit(&f.c, "g", "", -1, &[("orders", 0, 10), ("orders", 1, 11)]).await,
        vec![NONE, NONE]
    );
    let (error, found) = fetch(&f.c, "g", Some(&[("orders", &[0, 1, 2])])).await;
    assert_eq!(error, NONE);
    assert_eq!(
        found,
        vec![
            ("orders".to_string(), 0, 10),
            ("orders".to_string(), 1, 11),
            ("orders".to_string(), 2, -1),
        ]
    );

    let joined = join_new(&f.c, "g", "consumer").await;
    let (me, generation) = (joined.member_id.to_string(), joined.generation_id);
    // Joined but not synced yet: the assignment is not known, so no commits.
    assert_eq!(
        commit(&f.c, "g", &me, generation, &[("orders", 0, 12)]).await,
        vec![err(ResponseError::RebalanceInProgress)]
    );
    assert_eq!(
        sync(&f.c, "g", &me, generation, &[(&me, "all")])
            .await
            .error_code,
        NONE
    );
    assert_eq!(
        commit(&f.c, "g", &me, generation, &[("orders", 0, 12)]).await,
        vec![NONE]
    );
    // With a live member, simple commits and other generations are refused.
    assert_eq!(
        commit(&f.c, "g", "", -1, &[("orders", 0, 99)]).await,
        vec![err(ResponseError::UnknownMemberId)]
    );
    assert_eq!(
        commit(&f.c, "g", &me, generation + 1, &[("orders", 0, 99)]).await,
        vec![err(ResponseError::IllegalGeneration)]
    );
    assert_eq!(
        commit(&f.c, "g", "stranger", generation, &[("orders", 0, 99)]).await,
        vec![err(ResponseError::UnknownMemberId)]
    );
    let (_, found) = fetch(&f.c, "g", Some(&[("orders", &[0])])).await;
    assert_eq!(found, vec![("orders".to_string(), 0, 12)]);

    // Once the member left, the group is Empty and simple commits are fine again.
    leave(&f.c, "g", &[(me.as_str(), None)]).await;
    assert_eq!(
        commit(&f.c, "g", "", -1, &[("orders", 0, 20)]).await,
        vec![NONE]
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_of_a_generation_this_broker_never_saw_must_rejoin() {
    let f = Fixture::new(0);
    assert_eq!(
        commit(&f.c, "moved", "m-1", 4, &[("orders", 0, 1)]).await,
        vec![err(ResponseError::IllegalGeneration)]
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_partitions_fail_alone_and_the_rest_of_the_commit_lands() {
    let f = Fixture::new(0);
    let got = commit(
        &f.c,
        "g",
        "",
        -1,
        &[
            ("orders", 0, 5),
            ("orders", 9, 5),
            ("nope", 0, 5),
            ("events", 1, 7),
            ("orders", -1, 5),
        ],
    )
    .await;
    // Answers come by topic as the request grouped them: orders 0, 9, -1; nope 0; events 1.
    let unknown = err(ResponseError::UnknownTopicOrPartition);
    assert_eq!(got, vec![NONE, unknown, unknown, unknown, NONE]);
    let (_, found) = fetch(&f.c, "g", None).await;
    assert_eq!(
        found,
        vec![("events".to_string(), 1, 7), ("orders".to_string(), 0, 5)]
    );

    let long = "x".repeat(5000);
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(3)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(s(&long))),
                ]),
        ]);
    let resp = f.c.offset_commit(req, 8).await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        err(ResponseError::OffsetMetadataTooLarge)
    );
}

#[tokio::test(start_paused = true)]
async fn fetching_all_offsets_and_several_groups_at_once() {
    let f = Fixture::new(0);
    commit(&f.c, "one", "", -1, &[("orders", 2, 20), ("events", 0, 3)]).await;
    commit(&f.c, "two", "", -1, &[("orders", 0, 7)]).await;

    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("one"))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("two"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![0, 1]),
            ])),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid(""))
            .with_topics(None),
    ]);
    let resp = f.c.offset_fetch(req, 9).await;
    let flat = |i: usize| -> Vec<(String, i32, i64)> {
        resp.groups[i]
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
            .collect()
    };
    assert_eq!(
        flat(0),
        vec![("events".to_string(), 0, 3), ("orders".to_string(), 2, 20)]
    );
    assert_eq!(
        flat(1),
        vec![("orders".to_string(), 0, 7), ("orders".to_string(), 1, -1)]
    );
    assert_eq!(
        resp.groups[2].error_code,
        err(ResponseError::InvalidGroupId)
    );

    // A group without commits: nothing when asking for everything, -1 when asking for some.
    assert_eq!(fetch(&f.c, "none", None).await, (NONE, Vec::new()));
    assert_eq!(
        fetch(&f.c, "none", Some(&[("orders", &[3])])).await,
        (NONE, vec![("orders".to_string(), 3, -1)])
    );
}

#[tokio::test(start_paused = true)]
async fn another_brokers_groups_get_not_coordinator_everywhere() {
    let f = Fixture::new(0);
    commit(&f.c, "g", "", -1, &[("orders", 0, 1)]).await;
    f.set_owned(false);
    let nc = err(ResponseError::NotCoordinator);
    assert_eq!(
        commit(&f.c, "g", "", -1, &[("orders", 0, 2)]).await,
        vec![nc]
    );
    assert_eq!(fetch(&f.c, "g", None).await, (nc, Vec::new()));
    let v1 = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![0]),
        ]));
    let resp = f.c.offset_fetch(v1, 1).await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code, nc,
        "v1 carries errors per partition"
    );
    let j =
        f.c.join_group_from(join_req("g", "", None, &["range"]), 9, &client("x"))
            .await;
    assert_eq!(j.error_code, nc);
    assert_eq!(sync(&f.c, "g", "m", 1, &[]).await.error_code, nc);
    assert_eq!(heartbeat(&f.c, "g", "m", 1).await, nc);
    assert_eq!(leave(&f.c, "g", &[("m", None)]).await.error_code, nc);
    f.set_owned(true);
    assert_eq!(
        fetch(&f.c, "g", None).await,
        (NONE, vec![("orders".to_string(), 0, 1)])
    );
}
