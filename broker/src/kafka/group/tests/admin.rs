//! Ownership (NOT_COORDINATOR, groups moving away), ListGroups, DescribeGroups and
//! DeleteGroups.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

use super::offsets::{commit_errors, commit_req, fetch_req_v7, fetched};
use super::*;

#[tokio::test(start_paused = true)]
async fn every_api_answers_not_coordinator_for_a_group_owned_elsewhere() {
    let h = Harness::new();
    h.c.offset_commit(commit_req("away", "", -1, &[("t", 0, 1)]), 8)
        .await;
    h.set_foreign("away", true);
    let nc = Some(ResponseError::NotCoordinator);

    let r = spawn_join(&h.c, join_req("away", "", None), 9, "c")
        .await
        .unwrap();
    assert_eq!(err(r.error_code), nc);
    let r = h.c.sync_group(sync_req("away", "m", 1, &[]), 5).await;
    assert_eq!(err(r.error_code), nc);
    assert_eq!(heartbeat(&h.c, "away", "m", 1).await, nc);
    let r = leave(&h.c, "away", &[("m", None)]).await;
    assert_eq!(err(r.error_code), nc);
    let r =
        h.c.offset_commit(commit_req("away", "", -1, &[("t", 0, 2), ("t", 1, 2)]), 8)
            .await;
    assert!(commit_errors(&r).iter().all(|e| e.2 == nc));
    let r = h.c.offset_fetch(fetch_req_v7("away", None), 7).await;
    assert_eq!(err(r.error_code), nc);
    let r = describe(&h.c, "away", 5).await;
    assert_eq!(err(r.groups[0].error_code), nc);
    let r =
        h.c.delete_groups(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("away")]),
            2,
        )
        .await;
    assert_eq!(err(r.results[0].error_code), nc);
    let r = h.c.list_groups(ListGroupsRequest::default(), 5).await;
    assert!(
        r.groups.is_empty(),
        "a group owned elsewhere is not listed here: {r:?}"
    );

    // Back here: its offsets were never lost.
    h.set_foreign("away", false);
    let r = h.c.offset_fetch(fetch_req_v7("away", None), 7).await;
    assert_eq!(fetched(&r), vec![("t".into(), 0, 1, "m1".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_group_that_moves_away_drops_its_state_and_answers_parked_requests() {
    let h = Harness::new();
    let f = form_group(&h, "g", 2).await;
    let r =
        h.c.offset_commit(
            commit_req("g", &f.members[0], f.generation, &[("t", 0, 42)]),
            8,
        )
        .await;
    assert_eq!(commit_errors(&r)[0].2, None);
    // A rebalance is under way: member 0 rejoined and waits for member 1.
    let newcomer = spawn_join_dynamic(&h.c, "g", "late");
    tokio::task::yield_now().await;
    let parked = spawn_rejoin(&h.c, "g", &f.members[0]);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!parked.is_finished());

    // A broker joined the cluster and now owns the group: the background sweep lets go.
    h.set_foreign("g", true);
    let r = parked.await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::NotCoordinator));
    let r = newcomer.await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::NotCoordinator));
    assert_eq!(
        heartbeat(&h.c, "g", &f.members[1], f.generation).await,
        Some(ResponseError::NotCoordinator)
    );

    // Should the group come back, the members rejoin from scratch; offsets are intact.
    h.set_foreign("g", false);
    assert_eq!(
        heartbeat(&h.c, "g", &f.members[1], f.generation).await,
        Some(ResponseError::UnknownMemberId)
    );
    let r = spawn_rejoin(&h.c, "g", &f.members[0]).await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
    let r =
        h.c.offset_fetch(fetch_req_v7("g", Some(&[("t", &[0])])), 7)
            .await;
    assert_eq!(fetched(&r)[0].2, 42);
}

#[tokio::test(start_paused = true)]
async fn delete_refuses_a_group_with_members() {
    let h = Harness::new();
    let f = form_group(&h, "g", 1).await;
    h.c.offset_commit(
        commit_req("g", &f.members[0], f.generation, &[("t", 0, 5)]),
        8,
    )
    .await;
    let delete = |ids: &[&str]| {
        h.c.delete_groups(
            DeleteGroupsRequest::default().with_groups_names(ids.iter().map(|g| gid(g)).collect()),
            2,
        )
    };
    let r = delete(&["g", "never", ""]).await;
    let codes: Vec<_> = r
        .results
        .iter()
        .map(|x| (x.group_id.0.to_string(), err(x.error_code)))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("g".into(), Some(ResponseError::NonEmptyGroup)),
            ("never".into(), Some(ResponseError::GroupIdNotFound)),
            ("".into(), Some(ResponseError::InvalidGroupId)),
        ]
    );
    assert_eq!(
        heartbeat(&h.c, "g", &f.members[0], f.generation).await,
        None
    );

    leave(&h.c, "g", &[(&f.members[0], None)]).await;
    let r = delete(&["g"]).await;
    assert_eq!(err(r.results[0].error_code), None);
    let r =
        h.c.offset_fetch(fetch_req_v7("g", Some(&[("t", &[0])])), 7)
            .await;
    assert_eq!(fetched(&r)[0].2, -1, "offsets deleted with the group");
    assert_eq!(
        describe(&h.c, "g", 5).await.groups[0].group_state.as_str(),
        "Dead"
    );
    let d = describe(&h.c, "g", 6).await.groups.remove(0);
    assert_eq!(err(d.error_code), Some(ResponseError::GroupIdNotFound));
    assert!(d.error_message.is_some());
    let r = delete(&["g"]).await;
    assert_eq!(
        err(r.results[0].error_code),
        Some(ResponseError::GroupIdNotFound)
    );

    // A group known only by its offsets (simple consumer) can be deleted too.
    h.c.offset_commit(commit_req("simple", "", -1, &[("t", 1, 1)]), 8)
        .await;
    let r = delete(&["simple"]).await;
    assert_eq!(err(r.results[0].error_code), None);
}

#[tokio::test(start_paused = true)]
async fn list_and_describe_show_held_and_stored_groups() {
    let h = Harness::new();
    let f = form_group(&h, "live", 2).await;
    h.c.offset_commit(commit_req("simple", "", -1, &[("t", 0, 1)]), 8)
        .await;
    h.c.offset_commit(commit_req("elsewhere", "", -1, &[("t", 0, 1)]), 8)
        .await;
    h.set_foreign("elsewhere", true);

    let list = |states: &[&str], types: &[&str], v: i16| {
        h.c.list_groups(
            ListGroupsRequest::default()
                .with_states_filter(states.iter().map(|x| s(x)).collect())
                .with_types_filter(types.iter().map(|x| s(x)).collect()),
            v,
        )
    };
    let r = list(&[], &[], 5).await;
    let got: Vec<(String, String, String, String)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "live".into(),
                "consumer".into(),
                "Stable".into(),
                "classic".into()
            ),
            ("simple".into(), "".into(), "Empty".into(), "classic".into()),
        ]
    );
    let r = list(&["stable"], &[], 4).await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group_id.0.as_str(), "live");
    let r = list(&["Empty"], &["Classic"], 5).await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group_id.0.as_str(), "simple");
    assert!(list(&[], &["consumer"], 5).await.groups.is_empty());

    let r =
        h.c.describe_groups(
            DescribeGroupsRequest::default()
                .with_groups(vec![gid("live"), gid("simple"), gid("none")])
                .with_include_authorized_operations(true),
            5,
        )
        .await;
    let live = &r.groups[0];
    assert_eq!(
        (
            live.group_state.as_str(),
            live.protocol_type.as_str(),
            live.protocol_data.as_str()
        ),
        ("Stable", "consumer", "range")
    );
    let ids: Vec<&str> = live.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(
        ids,
        f.members.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        live.members
            .iter()
            .all(|m| m.member_metadata.starts_with(b"range:"))
    );
    assert!(live.authorized_operations > 0);
    assert_eq!(r.groups[1].group_state.as_str(), "Empty");
    assert_eq!(r.groups[2].group_state.as_str(), "Dead");
    assert_eq!(r.groups[2].error_code, 0);

    // During a rebalance members are listed without metadata or assignment.
    leave(&h.c, "live", &[(&f.members[1], None)]).await;
    let d = describe(&h.c, "live", 5).await.groups.remove(0);
    assert_eq!(d.group_state.as_str(), "PreparingRebalance");
    assert_eq!(d.protocol_data.as_str(), "");
    assert!(
        d.members
            .iter()
            .all(|m| m.member_metadata.is_empty() && m.member_assignment.is_empty())
    );
}
