//! Joining, syncing, heartbeats, leaving and session expiry of dynamic members.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

use super::*;

#[tokio::test(start_paused = true)]
async fn three_members_join_sync_and_heartbeat() {
    let h = Harness::new();
    let joins: Vec<_> = (0..3)
        .map(|i| spawn_join_dynamic(&h.c, "g", &format!("client{i}")))
        .collect();
    let mut responses = Vec::new();
    for j in joins {
        responses.push(j.await.unwrap());
    }
    let leader = responses[0].leader.clone();
    for r in &responses {
        assert_eq!(err(r.error_code), None);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, leader, "every member names the same leader");
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        if r.member_id == leader {
            assert_eq!(r.members.len(), 3, "the leader sees every member");
            for m in &r.members {
                assert_eq!(
                    m.metadata,
                    Bytes::from(format!("range:{}", m.member_id.as_str()))
                );
            }
        } else {
            assert!(r.members.is_empty(), "followers see no members");
        }
    }

    // Followers' SyncGroups wait for the leader's, which carries every assignment.
    let leader_resp = responses.iter().find(|r| r.member_id == leader).unwrap();
    let members: Vec<String> = leader_resp
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    let followers: Vec<_> = responses
        .iter()
        .filter(|r| r.member_id != leader)
        .map(|r| {
            (
                r.member_id.to_string(),
                spawn_sync(&h.c, sync_req("g", &r.member_id, 1, &[])),
            )
        })
        .collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        followers.iter().all(|(_, f)| !f.is_finished()),
        "a follower was answered before the leader synced"
    );
    let assignments: Vec<(String, String)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), format!("a-{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    let r = h.c.sync_group(sync_req("g", &leader, 1, &pairs), 5).await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(
        r.assignment,
        Bytes::from("a-0"),
        "the leader is first in its member list"
    );
    for (id, f) in followers {
        let r = f.await.unwrap();
        assert_eq!(err(r.error_code), None);
        let i = members.iter().position(|m| *m == id).unwrap();
        assert_eq!(
            r.assignment,
            Bytes::from(format!("a-{i}")),
            "assignment of {id}"
        );
    }
    let formed = Formed {
        members,
        generation: 1,
    };

    for m in &formed.members {
        assert_eq!(heartbeat(&h.c, "g", m, 1).await, None, "heartbeat of {m}");
    }
    let d = describe(&h.c, "g", 5).await.groups.remove(0);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members.len(), 3);
    for m in &d.members {
        assert!(
            m.client_id.starts_with("client"),
            "client id {:?}",
            m.client_id
        );
        assert_eq!(m.client_host.as_str(), "/127.0.0.1");
        assert!(!m.member_assignment.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn leaving_member_triggers_rebalance_with_new_generation() {
    let h = Harness::new();
    let f = form_group(&h, "g", 3).await;
    let gone = f.members[2].clone();
    let r = leave(&h.c, "g", &[(&gone, None)]).await;
    assert_eq!(err(r.error_code), None);
    assert_eq!(err(r.members[0].error_code), None);

    // The others learn of the rebalance through their heartbeats and rejoin.
    for m in &f.members[..2] {
        assert_eq!(
            heartbeat(&h.c, "g", m, f.generation).await,
            Some(ResponseError::RebalanceInProgress)
        );
    }
    let rejoins: Vec<_> = f.members[..2]
        .iter()
        .map(|m| spawn_rejoin(&h.c, "g", m))
        .collect();
    let mut responses = Vec::new();
    for j in rejoins {
        let r = j.await.unwrap();
        assert_eq!(err(r.error_code), None);
        assert_eq!(r.generation_id, f.generation + 1);
        responses.push(r);
    }
    let leader = responses.iter().find(|r| r.member_id == r.leader).unwrap();
    let ids: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&gone.as_str()));
    sync_all(&h, "g", responses).await;
    assert_eq!(
        heartbeat(&h.c, "g", &gone, f.generation + 1).await,
        Some(ResponseError::UnknownMemberId)
    );

    // The last members leaving empty the group.
    let r = leave(&h.c, "g", &[(&f.members[0], None), (&f.members[1], None)]).await;
    assert!(r.members.iter().all(|m| m.error_code == 0), "{r:?}");
    let d = describe(&h.c, "g", 5).await.groups.remove(0);
    assert_eq!(d.group_state.as_str(), "Empty");
    assert!(d.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn session_expiry_removes_silent_member() {
    let h = Harness::new();
    let f = form_group(&h, "g", 2).await;
    let (alive, silent) = (f.members[0].clone(), f.members[1].clone());

    // `alive` heartbeats every 3 s; `silent` never does. Its 10 s session runs out.
    let mut told = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let e = heartbeat(&h.c, "g", &alive, f.generation).await;
        if e.is_some() {
            told = e;
            break;
        }
    }
    assert_eq!(told, Some(ResponseError::RebalanceInProgress));
    let r = spawn_rejoin(&h.c, "g", &alive).await.unwrap();
    assert_eq!(err(r.error_code), None);
    assert_eq!(r.generation_id, f.generation + 1);
    assert_eq!(r.members.len(), 1, "only the live member is left");
    assert_eq!(r.members[0].member_id.as_str(), alive);
    assert_eq!(
        heartbeat(&h.c, "g", &silent, f.generation).await,
        Some(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let h = Harness::new();
    let joins: Vec<_> = (0..2)
        .map(|i| spawn_join_dynamic(&h.c, "g", &format!("client{i}")))
        .collect();
    let mut responses = Vec::new();
    for j in joins {
        responses.push(j.await.unwrap());
    }
    let leader = responses[0].leader.to_string();
    let follower = responses
        .iter()
        .find(|r| r.member_id.as_str() != leader)
        .unwrap();
    // The follower syncs and waits; the leader never sends its assignments.
    let waiting = spawn_sync(&h.c, sync_req("g", &follower.member_id, 1, &[]));
    let r = waiting.await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::RebalanceInProgress));
    assert_eq!(
        heartbeat(&h.c, "g", &leader, 1).await,
        Some(ResponseError::UnknownMemberId),
        "the leader that never synced was removed"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_generation_and_unknown_member_are_refused() {
    let h = Harness::new();
    let f = form_group(&h, "g", 1).await;
    let m = &f.members[0];
    assert_eq!(
        heartbeat(&h.c, "g", m, f.generation - 1).await,
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        heartbeat(&h.c, "g", "nobody-1", f.generation).await,
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        heartbeat(&h.c, "other", m, f.generation).await,
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        heartbeat(&h.c, "", m, f.generation).await,
        Some(ResponseError::InvalidGroupId)
    );

    let r =
        h.c.sync_group(sync_req("g", m, f.generation + 1, &[]), 5)
            .await;
    assert_eq!(err(r.error_code), Some(ResponseError::IllegalGeneration));
    let r =
        h.c.sync_group(sync_req("g", "nobody-1", f.generation, &[]), 5)
            .await;
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
    let bad_protocol =
        sync_req("g", m, f.generation, &[]).with_protocol_name(Some(s("roundrobin")));
    let r = h.c.sync_group(bad_protocol, 5).await;
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );

    // Rejoining with an id the group does not know, to an existing or unknown group.
    let r = spawn_join(&h.c, join_req("g", "nobody-1", None), 9, "c")
        .await
        .unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
    let r = spawn_join(&h.c, join_req("elsewhere", "nobody-1", None), 9, "c")
        .await
        .unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));

    let r = leave(&h.c, "g", &[("nobody-1", None)]).await;
    assert_eq!(
        err(r.members[0].error_code),
        Some(ResponseError::UnknownMemberId)
    );
    // v0-2: the member's error is the response's.
    let r =
        h.c.leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s("nobody-1")),
            1,
        )
        .await;
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
    assert_eq!(
        heartbeat(&h.c, "g", m, f.generation).await,
        None,
        "the real member is unaffected"
    );
}

#[tokio::test(start_paused = true)]
async fn join_validation_errors() {
    let h = Harness::new();
    let join = |req: JoinGroupRequest, v: i16| spawn_join(&h.c, req, v, "c");

    let r = join(join_req("g", "", None).with_session_timeout_ms(1000), 9)
        .await
        .unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InvalidSessionTimeout)
    );
    let r = join(join_req("g", "", None).with_session_timeout_ms(301_000), 9)
        .await
        .unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InvalidSessionTimeout)
    );
    let r = join(join_req("", "", None), 9).await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::InvalidGroupId));
    let r = join(join_req("g", "", None).with_protocol_type(s("")), 3)
        .await
        .unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let r = join(join_req("g", "", None).with_protocols(vec![]), 3)
        .await
        .unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let listed = h.c.list_groups(ListGroupsRequest::default(), 5).await;
    assert!(
        listed.groups.is_empty(),
        "refused joins leave no group behind: {listed:?}"
    );

    // A member offering no protocol the group's members all support is refused.
    let f = form_group(&h, "g", 1).await;
    let other = JoinGroupRequest::default()
        .with_group_id(gid("g"))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default().with_name(s("sticky")),
        ]);
    let r = join(other.clone(), 3).await.unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let r = join(
        other
            .with_protocol_type(s("connect"))
            .with_protocols(protocols("x")),
        3,
    )
    .await
    .unwrap();
    assert_eq!(
        err(r.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        heartbeat(&h.c, "g", &f.members[0], f.generation).await,
        None
    );
}

#[tokio::test(start_paused = true)]
async fn old_clients_join_without_member_id_round_trip() {
    let h = Harness::new();
    // v0-3 clients are admitted on their first JoinGroup (no MEMBER_ID_REQUIRED).
    let a = spawn_join(&h.c, join_req("g", "", None), 0, "old0");
    let b = spawn_join(&h.c, join_req("g", "", None), 3, "old3");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!((err(a.error_code), err(b.error_code)), (None, None));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert!(a.member_id.starts_with("old0-") && b.member_id.starts_with("old3-"));
    sync_all(&h, "g", vec![a, b]).await;
}

#[tokio::test(start_paused = true)]
async fn new_member_joining_a_stable_group_rebalances_everyone() {
    let h = Harness::new();
    let f = form_group(&h, "g", 2).await;
    let newcomer = spawn_join_dynamic(&h.c, "g", "late");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !newcomer.is_finished(),
        "the newcomer waits for the others to rejoin"
    );
    let rejoins: Vec<_> = f
        .members
        .iter()
        .map(|m| spawn_rejoin(&h.c, "g", m))
        .collect();
    let mut responses = vec![newcomer.await.unwrap()];
    for j in rejoins {
        responses.push(j.await.unwrap());
    }
    for r in &responses {
        assert_eq!(err(r.error_code), None);
        assert_eq!(r.generation_id, f.generation + 1);
    }
    let formed = sync_all(&h, "g", responses).await;
    assert_eq!(formed.members.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn parked_new_member_expires_after_the_new_member_join_timeout() {
    let h = Harness::new();
    // A member with a 10-minute rebalance timeout that keeps heartbeating but never
    // rejoins keeps the join phase open; a newcomer cannot wait in it forever.
    let a = spawn_join(
        &h.c,
        join_req("g", "", None)
            .with_session_timeout_ms(120_000)
            .with_rebalance_timeout_ms(600_000),
        3,
        "a",
    )
    .await
    .unwrap();
    let f = sync_all(&h, "g", vec![a]).await;
    let newcomer = spawn_join_dynamic(&h.c, "g", "new");
    let mut answered = None;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            heartbeat(&h.c, "g", &f.members[0], f.generation).await,
            Some(ResponseError::RebalanceInProgress)
        );
        if newcomer.is_finished() {
            answered = Some(tokio::time::Instant::now());
            break;
        }
    }
    assert!(
        answered.is_some(),
        "the newcomer was still parked after 8 minutes"
    );
    let r = newcomer.await.unwrap();
    assert_eq!(err(r.error_code), Some(ResponseError::UnknownMemberId));
}
