//! Joining, syncing, heartbeats, leaving, expiry and static membership.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::DescribeGroupsRequest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

#[tokio::test(start_paused = true)]
async fn three_members_join_sync_and_heartbeat_in_one_generation() {
    let f = Fixture::new(3_000);
    let started = Instant::now();
    let mut joins = Vec::new();
    for client_id in ["alpha", "beta", "gamma"] {
        let c = f.c.clone();
        joins.push(tokio::spawn(
            async move { join_new(&c, "g", client_id).await },
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut joined = Vec::new();
    for j in joins {
        joined.push(j.await.unwrap());
    }
    // The initial delay (3 s, extended once because members kept arriving) batched all three.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(7),
        "waited {waited:?}"
    );
    let leader = joined[0].member_id.to_string();
    for j in &joined {
        assert_eq!(j.error_code, NONE, "{j:?}");
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.leader.as_str(), leader);
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
    }
    let listed: Vec<&str> = joined[0]
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    let ids: Vec<&str> = joined.iter().map(|j| j.member_id.as_str()).collect();
    assert_eq!(listed, ids, "the leader sees every member in join order");
    assert_eq!(
        joined[0].members[1].metadata,
        Bytes::from("range-subscription")
    );
    assert!(
        joined[1].members.is_empty() && joined[2].members.is_empty(),
        "followers get no member list"
    );

    // Followers wait in SyncGroup until the leader's assignment arrives.
    let mut followers = Vec::new();
    for id in &ids[1..] {
        let (c, id) = (f.c.clone(), id.to_string());
        followers.push(tokio::spawn(
            async move { sync(&c, "g", &id, 1, &[]).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        followers.iter().all(|t| !t.is_finished()),
        "followers answered before the leader synced"
    );
    let led = sync(
        &f.c,
        "g",
        &leader,
        1,
        &[(ids[0], "A"), (ids[1], "B"), (ids[2], "C")],
    )
    .await;
    assert_eq!(
        (led.error_code, led.assignment.clone()),
        (NONE, Bytes::from("A"))
    );
    assert_eq!(led.protocol_name.as_deref(), Some("range"));
    for (t, want) in followers.into_iter().zip(["B", "C"]) {
        let got = t.await.unwrap();
        assert_eq!((got.error_code, got.assignment), (NONE, Bytes::from(want)));
    }
    for id in &ids {
        assert_eq!(heartbeat(&f.c, "g", id, 1).await, NONE, "heartbeat of {id}");
    }
    let d =
        f.c.describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid("g")]),
            5,
        )
        .await;
    let g = &d.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(g.members.len(), 3);
    assert_eq!(g.members[1].client_id.as_str(), "beta");
    assert_eq!(g.members[1].member_assignment, Bytes::from("B"));
}

#[tokio::test(start_paused = true)]
async fn a_member_leaving_moves_the_others_to_a_new_generation() {
    let f = Fixture::new(3_000);
    let m = stable_group(&f, "g", &["a", "b", "c"]).await;
    let (a, b, c) = (&m[0].0, &m[1].0, &m[2].0);
    let gen1 = m[0].1;

    let left = leave(&f.c, "g", &[(c.as_str(), None)]).await;
    assert_eq!(left.error_code, NONE);
    assert_eq!(left.members[0].error_code, NONE);
    assert_eq!(
        heartbeat(&f.c, "g", a, gen1).await,
        err(ResponseError::RebalanceInProgress)
    );
    // Commits of the ending generation are still taken (consumers commit before rejoining).
    assert_eq!(
        commit(&f.c, "g", b, gen1, &[("orders", 0, 5)]).await,
        vec![NONE]
    );

    let (cc, bb) = (f.c.clone(), b.clone());
    let b_join = tokio::spawn(async move { rejoin(&cc, "g", &bb).await });
    let a_join = rejoin(&f.c, "g", a).await;
    let b_join = b_join.await.unwrap();
    assert_eq!((a_join.error_code, b_join.error_code), (NONE, NONE));
    assert_eq!(a_join.generation_id, gen1 + 1);
    assert_eq!(b_join.generation_id, gen1 + 1);
    assert_eq!(a_join.leader.as_str(), a.as_str());
    let members: Vec<&str> = a_join
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, vec![a.as_str(), b.as_str()]);

    assert_eq!(
        heartbeat(&f.c, "g", c, gen1).await,
        err(ResponseError::UnknownMemberId)
    );
    let stale = sync(&f.c, "g", b, gen1, &[]).await;
    assert_eq!(stale.error_code, err(ResponseError::IllegalGeneration));
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_expired_after_its_session_timeout() {
    let f = Fixture::new(3_000);
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(f.c.clone().run(cancel.clone()));
    let m = stable_group(&f, "g", &["talker", "silent"]).await;
    let (talker, silent, generation) = (&m[0].0, &m[1].0, m[0].1);
    let silent_since = Instant::now();

    let mut rebalancing_after = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let code = heartbeat(&f.c, "g", talker, generation).await;
        if code == err(ResponseError::RebalanceInProgress) {
            rebalancing_after = Some(silent_since.elapsed());
            break;
        }
        assert_eq!(code, NONE);
    }
    let after = rebalancing_after.expect("the silent member never expired");
    assert!(
        after >= Duration::from_millis(SESSION_MS as u64)
            && after <= Duration::from_millis(SESSION_MS as u64 + 2_000),
        "rebalance seen {after:?} after the last sign of life"
    );
    let again = rejoin(&f.c, "g", talker).await;
    assert_eq!(
        (again.error_code, again.generation_id),
        (NONE, generation + 1)
    );
    let members: Vec<&str> = again.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members, vec![talker.as_str()]);
    assert_eq!(
        heartbeat(&f.c, "g", silent, generation).await,
        err(ResponseError::UnknownMemberId)
    );
    cancel.cancel();
    runner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let f = Fixture::new(3_000);
    let m = stable_group(&f, "g", &["a", "b"]).await;
    let (a, b, generation) = (&m[0].0, &m[1].0, m[0].1);
    let started = Instant::now();
    let cc = f.c.clone();
    let newcomer = tokio::spawn(async move { join_new(&cc, "g", "c").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // b keeps heartbeating (and is told to rejoin) but never does: it stays alive until the
    // rebalance timeout ends the join without it.
    let (cc, bb) = (f.c.clone(), b.clone());
    let b_beats = tokio::spawn(async move {
        for _ in 0..20 {
            let code = heartbeat(&cc, "g", &bb, generation).await;
            if code != err(ResponseError::RebalanceInProgress) {
                return code;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        NONE
    });
    let a_join = rejoin(&f.c, "g", a).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(REBALANCE_MS as u64),
        "completed after {waited:?}"
    );
    let c_join = newcomer.await.unwrap();
    assert_eq!(b_beats.await.unwrap(), err(ResponseError::UnknownMemberId));
    assert_eq!(
        (a_join.error_code, a_join.generation_id),
        (NONE, generation + 1)
    );
    assert_eq!(c_join.generation_id, generation + 1);
    let members: Vec<&str> = a_join
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, vec![a.as_str(), c_join.member_id.as_str()]);
    assert_eq!(
        heartbeat(&f.c, "g", b, generation).await,
        err(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn followers_waiting_for_a_leader_that_never_syncs_are_told_to_rejoin() {
    let f = Fixture::new(0);
    let first = join_new(&f.c, "g", "leader").await;
    let leader = first.member_id.to_string();
    let cc = f.c.clone();
    let follower = tokio::spawn(async move { join_new(&cc, "g", "follower").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = rejoin(&f.c, "g", &leader).await;
    let joined = follower.await.unwrap();
    assert_eq!((again.generation_id, joined.generation_id), (2, 2));
    let started = Instant::now();
    let answer = sync(&f.c, "g", &joined.member_id, 2, &[]).await;
    assert_eq!(answer.error_code, err(ResponseError::RebalanceInProgress));
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_millis(REBALANCE_MS as u64 + 100),
        "waited {waited:?}"
    );
    assert_eq!(
        heartbeat(&f.c, "g", &leader, 2).await,
        err(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn stale_generations_unknown_members_and_bad_joins_get_their_errors() {
    let f = Fixture::new(0);
    let joined = join_new(&f.c, "g", "solo").await;
    let (me, generation) = (joined.member_id.to_string(), joined.generation_id);
    assert_eq!((joined.error_code, generation), (NONE, 1));
    assert_eq!(joined.leader.as_str(), me, "a lone member leads");
    assert_eq!(
        sync(&f.c, "g", &me, generation, &[(&me, "all")])
            .await
            .error_code,
        NONE
    );

    assert_eq!(
        heartbeat(&f.c, "g", &me, generation - 1).await,
        err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        heartbeat(&f.c, "g", "nobody", generation).await,
        err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        heartbeat(&f.c, "other", &me, generation).await,
        err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        sync(&f.c, "g", &me, 7, &[]).await.error_code,
        err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        rejoin(&f.c, "g", "ghost").await.error_code,
        err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        rejoin(&f.c, "fresh", "ghost").await.error_code,
        err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        commit(&f.c, "g", &me, generation + 1, &[("orders", 0, 1)]).await,
        vec![err(ResponseError::IllegalGeneration)]
    );

    let no_common = join_req("g", "", None, &["sticky"]);
    let r = f.c.join_group_from(no_common, 3, &client("x")).await;
    assert_eq!(r.error_code, err(ResponseError::InconsistentGroupProtocol));
    let other_type = join_req("g", "", None, &["range"]).with_protocol_type(s("connect"));
    let r = f.c.join_group_from(other_type, 3, &client("x")).await;
    assert_eq!(r.error_code, err(ResponseError::InconsistentGroupProtocol));
    let short = join_req("g", "", None, &["range"]).with_session_timeout_ms(1_000);
    let r = f.c.join_group_from(short, 9, &client("x")).await;
    assert_eq!(r.error_code, err(ResponseError::InvalidSessionTimeout));
    let r =
        f.c.join_group_from(join_req("", "", None, &["range"]), 9, &client("x"))
            .await;
    assert_eq!(r.error_code, err(ResponseError::InvalidGroupId));
    let r =
        f.c.join_group_from(join_req("g2", "", None, &[]), 9, &client("x"))
            .await;
    assert_eq!(
        r.error_code,
        err(ResponseError::InconsistentGroupProtocol),
        "no protocols at all"
    );

    // The group is untouched by all of the above.
    assert_eq!(heartbeat(&f.c, "g", &me, generation).await, NONE);
}

#[tokio::test(start_paused = true)]
async fn the_protocol_is_the_one_most_members_prefer_among_those_all_support() {
    let f = Fixture::new(3_000);
    let mut joins = Vec::new();
    // The first member prefers range, but two of three prefer roundrobin.
    let members = [
        ("a", vec!["range", "roundrobin"]),
        ("b", vec!["roundrobin", "range"]),
        ("c", vec!["roundrobin", "range", "sticky"]),
    ];
    for (client_id, protocols) in members {
        let c = f.c.clone();
        joins.push(tokio::spawn(async move {
            let req = join_req("g", "", None, &protocols);
            c.join_group_from(req, 3, &client(client_id)).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for j in joins {
        let got = j.await.unwrap();
        assert_eq!(got.error_code, NONE);
        assert_eq!(got.protocol_name.as_deref(), Some("roundrobin"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let f = Fixture::new(3_000);
    let mut joins = Vec::new();
    for instance in ["inst-a", "inst-b"] {
        let c = f.c.clone();
        joins.push(tokio::spawn(async move {
            // Static members skip the MEMBER_ID_REQUIRED round trip.
            let req = join_req("g", "", Some(instance), &["range"]);
            c.join_group_from(req, 9, &client("app")).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a = joins.remove(0).await.unwrap();
    let b = joins.remove(0).await.unwrap();
    assert_eq!(
        (a.error_code, b.error_code, a.generation_id),
        (NONE, NONE, 1)
    );
    assert!(
        b.member_id.starts_with("inst-b-"),
        "static member ids start with the instance id: {:?}",
        b.member_id
    );
    assert_eq!(a.members[1].group_instance_id.as_deref(), Some("inst-b"));
    let (a_id, b_id) = (a.member_id.to_string(), b.member_id.to_string());
    let cc = f.c.clone();
    let b_sync = {
        let b_id = b_id.clone();
        tokio::spawn(async move { sync(&cc, "g", &b_id, 1, &[]).await })
    };
    sync(&f.c, "g", &a_id, 1, &[(&a_id, "A"), (&b_id, "B")]).await;
    assert_eq!(b_sync.await.unwrap().assignment, Bytes::from("B"));

    // b restarts: same instance id, no member id.
    let back =
        f.c.join_group_from(
            join_req("g", "", Some("inst-b"), &["range"]),
            9,
            &client("app"),
        )
        .await;
    assert_eq!((back.error_code, back.generation_id), (NONE, 1), "{back:?}");
    assert_ne!(back.member_id.as_str(), b_id);
    assert_eq!(back.leader.as_str(), a_id);
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("g"))
        .with_member_id(s(&b_id))
        .with_group_instance_id(Some(s("inst-b")))
        .with_generation_id(1);
    assert_eq!(
        f.c.heartbeat(hb, 4).await.error_code,
        err(ResponseError::FencedInstanceId)
    );
    let resynced = sync(&f.c, "g", &back.member_id, 1, &[]).await;
    assert_eq!(
        (resynced.error_code, resynced.assignment),
        (NONE, Bytes::from("B"))
    );
    assert_eq!(
        heartbeat(&f.c, "g", &a_id, 1).await,
        NONE,
        "no rebalance for the others"
    );

    // The leader restarts: it is told the old leader id, so it syncs as a follower and gets
    // its assignment back rather than assigning from an empty member list.
    let a_back =
        f.c.join_group_from(
            join_req("g", "", Some("inst-a"), &["range"]),
            9,
            &client("app"),
        )
        .await;
    assert_eq!((a_back.error_code, a_back.generation_id), (NONE, 1));
    assert_eq!(a_back.leader.as_str(), a_id);
    assert!(a_back.members.is_empty());
    let a_sync = sync(&f.c, "g", &a_back.member_id, 1, &[]).await;
    assert_eq!(a_sync.assignment, Bytes::from("A"));

    // Leaving by instance id with a stale member id is fenced; with the current one it works.
    let fenced = leave(&f.c, "g", &[(b_id.as_str(), Some("inst-b"))]).await;
    assert_eq!(
        fenced.members[0].error_code,
        err(ResponseError::FencedInstanceId)
    );
    let gone = leave(&f.c, "g", &[("", Some("inst-b"))]).await;
    assert_eq!(gone.members[0].error_code, NONE);
    assert_eq!(
        heartbeat(&f.c, "g", &a_back.member_id, 1).await,
        err(ResponseError::RebalanceInProgress)
    );
}

#[tokio::test(start_paused = true)]
async fn losing_the_group_answers_waiting_members_not_coordinator() {
    let f = Fixture::new(0);
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(f.c.clone().run(cancel.clone()));
    let first = join_new(&f.c, "g", "a").await;
    assert_eq!(
        commit(&f.c, "g", "", -1, &[("orders", 1, 42)]).await,
        vec![err(ResponseError::UnknownMemberId)]
    );
    let cc = f.c.clone();
    let waiting = tokio::spawn(async move { join_new(&cc, "g", "b").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiting.is_finished());
    f.set_owned(false);
    let answer = waiting.await.unwrap();
    assert_eq!(answer.error_code, err(ResponseError::NotCoordinator));
    assert_eq!(
        heartbeat(&f.c, "g", &first.member_id, 1).await,
        err(ResponseError::NotCoordinator)
    );
    // Ownership back (say the broker set changed again): the group starts over, but offsets
    // were never in memory.
    f.set_owned(true);
    assert_eq!(
        heartbeat(&f.c, "g", &first.member_id, 1).await,
        err(ResponseError::UnknownMemberId)
    );
    cancel.cancel();
    runner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutting_down_sends_waiting_members_to_the_next_coordinator() {
    let f = Fixture::new(3_000);
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(f.c.clone().run(cancel.clone()));
    let cc = f.c.clone();
    let waiting = tokio::spawn(async move { join_new(&cc, "g", "a").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    runner.await.unwrap();
    assert_eq!(
        waiting.await.unwrap().error_code,
        err(ResponseError::NotCoordinator)
    );
}
