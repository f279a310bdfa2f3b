//! The state machine driven directly, with instants made by hand: no runtime, no timers,
//! answers read from the oneshot receivers as soon as the state machine sends them.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::time::Instant;

use super::*;

fn params(member: &str) -> JoinParams {
    JoinParams {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(20),
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"m"),
        }],
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

fn waiting(reply: Reply<JoinResult>) -> tokio::sync::oneshot::Receiver<JoinResult> {
    match reply {
        Reply::Wait(rx) => rx,
        Reply::Now(r) => panic!("expected to wait, got {r:?}"),
    }
}

#[test]
fn first_rebalance_waits_for_the_delay_and_extends_while_members_arrive() {
    let mut g = Groups::new(GroupConfig::default());
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut first = waiting(g.join(t0, params("")));
    assert_eq!(
        g.tick(t0 + s(2)),
        Some(t0 + s(3)),
        "the delay timer is next"
    );
    let mut second = waiting(g.join(t0 + s(2), params("")));

    // At 3 s a member arrived during the delay: wait one more delay.
    assert_eq!(g.tick(t0 + s(3)), Some(t0 + s(6)));
    assert_eq!(first.try_recv().unwrap_err(), TryRecvError::Empty);

    // At 6 s nobody new came: both are answered, generation 1, the first one leading.
    g.tick(t0 + s(6));
    let (a, b) = (first.try_recv().unwrap(), second.try_recv().unwrap());
    assert_eq!((a.error, b.error), (None, None));
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.leader, a.member_id);
    assert_eq!(a.members.len(), 2);
    assert!(b.members.is_empty());
    // Then the sync deadline (rebalance timeout) and the sessions are what is pending.
    assert_eq!(
        g.tick(t0 + s(6)),
        Some(t0 + s(16)),
        "next: the members' sessions"
    );
}

#[test]
fn silent_member_expires_on_tick_and_the_group_rebalances() {
    let mut g = Groups::new(GroupConfig {
        initial_rebalance_delay: Duration::ZERO,
        ..GroupConfig::default()
    });
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut rx = waiting(g.join(t0, params("")));
    g.tick(t0);
    let joined = rx.try_recv().unwrap();
    let id = joined.member_id.clone();
    let sync = SyncParams {
        group_id: "g".into(),
        member_id: id.clone(),
        generation: 1,
        assignments: vec![(id.clone(), Bytes::from_static(b"p0"))],
        ..SyncParams::default()
    };
    match g.sync(t0, sync) {
        Reply::Wait(mut rx) => {
            assert_eq!(rx.try_recv().unwrap().assignment, Bytes::from_static(b"p0"))
        }
        Reply::Now(r) => panic!("the leader's sync parks until it propagates: {r:?}"),
    }
    assert_eq!(g.heartbeat(t0 + s(9), "g", &id, None, 1), None);
    g.tick(t0 + s(18));
    assert_eq!(
        g.heartbeat(t0 + s(18), "g", &id, None, 1),
        None,
        "9 s + 10 s session not over"
    );
    g.tick(t0 + s(28));
    assert_eq!(
        g.heartbeat(t0 + s(28), "g", &id, None, 1),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.list()[0].state, GroupState::Empty);
    // An empty group is forgotten after the retention time; its offsets are elsewhere.
    g.tick(t0 + s(28) + GroupConfig::default().empty_group_retention);
    assert!(g.list().is_empty());
}
