//! Static membership (KIP-345): members with a `group.instance.id` keep their place and
//! assignment across restarts.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

use super::*;

async fn heartbeat_static(
    h: &Harness,
    member: &str,
    instance: &str,
    generation: i32,
) -> Option<ResponseError> {
    let r =
        h.c.heartbeat(
            HeartbeatRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(member))
                .with_group_instance_id(Some(s(instance)))
                .with_generation_id(generation),
            4,
        )
        .await;
    err(r.error_code)
}

/// Two static members `a` and `b`, formed and synced; returns (leader, follower) as
/// (member id, instance id) and the generation.
async fn form_static(h: &Harness) -> ((String, String), (String, String), i32) {
    let a = spawn_join(&h.c, join_req("g", "", Some("a")), 9, "ca");
    let b = spawn_join(&h.c, join_req("g", "", Some("b")), 9, "cb");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    for (r, instance) in [(&a, "a"), (&b, "b")] {
        assert_eq!(
            err(r.error_code),
            None,
            "static members need no MEMBER_ID_REQUIRED"
        );
        assert!(
            r.member_id.starts_with(&format!("{instance}-")),
            "{:?}",
            r.member_id
        );
    }
    let f = sync_all(h, "g", vec![a.clone(), b.clone()]).await;
    let instance_of = |id: &str| if a.member_id.as_str() == id { "a" } else { "b" };
    let leader = f.members[0].clone();
    let follower = f.members[1].clone();
    let li = instance_of(&leader).to_string();
    let fi = instance_of(&follower).to_string();
    ((leader, li), (follower, fi), f.generation)
}

#[tokio::test(start_paused = true)]
async fn restarted_static_member_keeps_its_assignment_without_a_rebalance() {
    let h = Harness::new();
    let ((leader, li), (old_follower, fi), generation) = form_static(&h).await;

    // The follower restarts: same instance id, no member id. It is answered at once with
    // the current generation and a new member id; nobody else rebalances.
    let r =
        h.c.join_group_from(join_req("g", "", Some(&fi)), 9, client("cb2"))
            .await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(r.generation_id, generation);
    assert_ne!(r.member_id.as_str(), old_follower);
    assert!(r.member_id.starts_with(&format!("{fi}-")));
    assert_eq!(r.leader.as_str(), leader);
    assert!(!r.skip_assignment && r.members.is_empty());
    let follower = r.member_id.to_string();
    assert_eq!(heartbeat_static(&h, &leader, &li, generation).await, None);

    // Its old incarnation is fenced; the new one gets the old assignment back.
    assert_eq!(
        heartbeat_static(&h, &old_follower, &fi, generation).await,
        Some(ResponseError::FencedInstanceId)
    );
    let sync = sync_req("g", &follower, generation, &[]).with_group_instance_id(Some(s(&fi)));
    let r = h.c.sync_group(sync, 5).await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(r.assignment, bytes::Bytes::from("a-1"));

    // The leader restarts on a v9 client: it stays leader and is told to skip assigning,
    // with the member list so it can watch for metadata changes.
    let r =
        h.c.join_group_from(join_req("g", "", Some(&li)), 9, client("ca2"))
            .await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(r.generation_id, generation);
    assert_eq!(r.leader, r.member_id, "still the leader");
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert!(r.members.iter().all(|m| m.group_instance_id.is_some()));

    // An older client restarting as leader cannot skip the assignment, so it must not be
    // told it leads.
    let r =
        h.c.join_group_from(join_req("g", "", Some(&li)), 8, client("ca3"))
            .await;
    assert_eq!(err(r.error_code), None);
    assert_ne!(r.leader, r.member_id);
    assert!(r.members.is_empty());
    assert_eq!(
        heartbeat_static(&h, &follower, &fi, generation).await,
        None,
        "no rebalance"
    );
    let d = describe(&h.c, "g", 5).await.groups.remove(0);
    assert_eq!(d.group_state.as_str(), "Stable");
}

#[tokio::test(start_paused = true)]
async fn static_member_missing_a_rebalance_stays_in_the_group() {
    let h = Harness::new();
    // The static member has a long session so that a rebalance does not expire it.
    let a = spawn_join(
        &h.c,
        join_req("g", "", Some("a")).with_session_timeout_ms(120_000),
        9,
        "ca",
    );
    let d = spawn_join_dynamic(&h.c, "g", "cd");
    let (a, d) = (a.await.unwrap(), d.await.unwrap());
    let f = sync_all(&h, "g", vec![a.clone(), d.clone()]).await;

    // A newcomer starts a rebalance; the dynamic member rejoins, the static one does not.
    let newcomer = spawn_join_dynamic(&h.c, "g", "new");
    tokio::task::yield_now().await;
    let d2 = spawn_rejoin(&h.c, "g", &d.member_id);
    let (n, d2) = (newcomer.await.unwrap(), d2.await.unwrap());
    assert_eq!(n.generation_id, f.generation + 1);
    let leader = [&n, &d2]
        .into_iter()
        .find(|r| r.leader == r.member_id)
        .unwrap();
    let ids: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert!(
        ids.contains(&a.member_id.as_str()),
        "static member kept: {ids:?}"
    );
    assert_eq!(ids.len(), 3);
    // Still a member, of an older generation.
    assert_eq!(
        heartbeat_static(&h, &a.member_id, "a", f.generation).await,
        Some(ResponseError::IllegalGeneration)
    );

    // An admin removes it by instance id alone.
    let r = leave(&h.c, "g", &[("", Some("a"))]).await;
    assert_eq!(err(r.members[0].error_code), None);
    assert_eq!(
        heartbeat_static(&h, &a.member_id, "a", n.generation_id).await,
        Some(ResponseError::UnknownMemberId)
    );
    let r = leave(&h.c, "g", &[("", Some("zzz"))]).await;
    assert_eq!(
        err(r.members[0].error_code),
        Some(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn static_member_with_a_stale_member_id_is_fenced() {
    let h = Harness::new();
    let ((leader, li), _, generation) = form_static(&h).await;
    let r =
        h.c.join_group_from(join_req("g", "a-stale", Some(&li)), 9, client("x"))
            .await;
    assert_eq!(err(r.error_code), Some(ResponseError::FencedInstanceId));
    let r = leave(&h.c, "g", &[("a-stale", Some(&li))]).await;
    assert_eq!(
        err(r.members[0].error_code),
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(heartbeat_static(&h, &leader, &li, generation).await, None);
}
