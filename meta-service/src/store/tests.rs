//! Unit tests of the apply logic, driven through [`State::apply`] as Raft drives it.

use robustmq_proto::meta::*;

use super::*;
use crate::error::MetaError;
use crate::keys;

fn apply(s: &mut State, now_ms: u64, cmd: Command) -> MetaResult<Output> {
    let (mut results, _) = s.apply(&Request::new(now_ms, vec![cmd]));
    results.pop().expect("one result")
}

fn policy(name: &str, replicas: u32) -> Command {
    Command::PutPolicy {
        policy: Pb(StoragePolicy {
            name: name.into(),
            engine: Engine::Segment as i32,
            replicas,
            ..Default::default()
        }),
        create: true,
    }
}

fn topic(name: &str, shards: u32, policy: &str) -> Topic {
    normalize_topic(&Topic {
        name: name.into(),
        shards,
        storage_policy: policy.into(),
        ..Default::default()
    })
    .expect("valid topic")
}

fn create(s: &mut State, t: Topic) -> MetaResult<Output> {
    apply(s, 0, Command::CreateTopic { topic: Pb(t) })
}

fn journal(s: &mut State, id: u64, now: u64) {
    apply(
        s,
        now,
        Command::RegisterNode {
            node: Pb(Node {
                id,
                role: NodeRole::Journal as i32,
                addr: format!("j{id}:1778"),
                ..Default::default()
            }),
            lease_ttl_ms: 1000,
        },
    )
    .expect("register");
}

fn shards(s: &State, topic: &str) -> Vec<ShardPlacement> {
    s.list(&keys::shards_of(topic))
}

#[test]
fn a_topic_needs_an_existing_policy_and_unique_bindings() {
    let mut s = State::new(100);
    let e = create(&mut s, topic("a", 1, "p")).unwrap_err();
    assert!(
        matches!(&e, MetaError::FailedPrecondition(m) if m.contains("'p'")),
        "{e:?}"
    );
    apply(&mut s, 0, policy("p", 1)).unwrap();
    let mut a = topic("a", 1, "p");
    a.mqtt_filter = "sensors/#".into();
    create(&mut s, a).unwrap();

    let mut b = topic("b", 1, "p");
    b.kafka_name = "a".into();
    let e = create(&mut s, b).unwrap_err();
    assert!(
        matches!(&e, MetaError::AlreadyExists { kind, .. } if kind == "kafka name"),
        "{e:?}"
    );
    let mut c = topic("c", 1, "p");
    c.mqtt_filter = "sensors/#".into();
    let e = create(&mut s, c).unwrap_err();
    assert!(
        matches!(&e, MetaError::AlreadyExists { kind, .. } if kind == "mqtt filter"),
        "{e:?}"
    );

    let e = apply(&mut s, 0, Command::DeletePolicy { name: "p".into() }).unwrap_err();
    assert!(
        matches!(&e, MetaError::FailedPrecondition(m) if m.contains("'a'")),
        "{e:?}"
    );
    apply(&mut s, 0, Command::DeleteTopic { name: "a".into() }).unwrap();
    assert!(shards(&s, "a").is_empty(), "shards go with their topic");
    // The bindings are free again.
    let mut c = topic("c", 1, "p");
    c.mqtt_filter = "sensors/#".into();
    create(&mut s, c).unwrap();
}

#[test]
fn a_failed_command_changes_nothing() {
    let mut s = State::new(100);
    apply(&mut s, 0, policy("p", 1)).unwrap();
    let before = s.revision();
    let e = apply(
        &mut s,
        0,
        Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![Pb(PartitionOffset {
                topic: "missing".into(),
                ..Default::default()
            })],
        },
    );
    assert!(e.is_err());
    assert!(create(&mut s, topic("p2", 1, "nope")).is_err());
    assert_eq!(s.revision(), before);
}

#[test]
fn shards_spread_over_live_journals_and_leaders_move_with_an_epoch_bump_on_expiry() {
    let mut s = State::new(1000);
    apply(&mut s, 0, policy("p", 2)).unwrap();
    for id in 1..=3 {
        journal(&mut s, id, 0);
    }
    create(&mut s, topic("t", 6, "p")).unwrap();
    let placed = shards(&s, "t");
    for p in &placed {
        assert_eq!(p.replicas.len(), 2, "{p:?}");
        assert!(p.replicas.contains(&p.leader), "{p:?}");
        assert_eq!(p.epoch, 1);
    }
    let mut leads = [0; 4];
    for p in &placed {
        leads[p.leader as usize] += 1;
    }
    assert_eq!(&leads[1..], &[2, 2, 2], "leaders spread evenly: {placed:?}");

    // Journal 1 keeps heartbeating past t=1000; the others do not.
    apply(
        &mut s,
        900,
        Command::Heartbeat {
            role: NodeRole::Journal as i32,
            id: 1,
            lease_ttl_ms: 5000,
        },
    )
    .unwrap();
    assert!(s.needs_sweep(1500));
    apply(&mut s, 1500, Command::Sweep).unwrap();
    for p in shards(&s, "t") {
        let before = placed.iter().find(|b| b.shard == p.shard).unwrap();
        if before.leader == 1 {
            assert_eq!(
                (p.leader, p.epoch),
                (1, 1),
                "a live leader keeps its epoch: {p:?}"
            );
        } else if p.replicas.contains(&1) {
            assert_eq!(
                (p.leader, p.epoch),
                (1, 2),
                "leadership moves to the live replica: {p:?}"
            );
        } else {
            assert_eq!(
                (p.leader, p.epoch),
                (0, 2),
                "no live replica: offline, fenced: {p:?}"
            );
        }
    }
    // Journal 2 comes back and leads the offline shards again, with a new epoch.
    apply(
        &mut s,
        1600,
        Command::Heartbeat {
            role: NodeRole::Journal as i32,
            id: 2,
            lease_ttl_ms: 5000,
        },
    )
    .unwrap();
    for p in shards(&s, "t") {
        assert_ne!(p.leader, 0, "every shard has a live replica again: {p:?}");
        assert!(p.leader != 3, "expired node 3 cannot lead: {p:?}");
    }
}

#[test]
fn shards_created_before_any_journal_are_placed_when_one_registers() {
    let mut s = State::new(100);
    apply(&mut s, 0, policy("p", 1)).unwrap();
    create(&mut s, topic("t", 2, "p")).unwrap();
    assert!(
        shards(&s, "t")
            .iter()
            .all(|p| p.leader == 0 && p.replicas.is_empty())
    );
    journal(&mut s, 7, 0);
    for p in shards(&s, "t") {
        assert_eq!((p.replicas.clone(), p.leader, p.epoch), (vec![7], 7, 1));
    }
}

#[test]
fn draining_a_journal_moves_its_replicas_away() {
    let mut s = State::new(1000);
    apply(&mut s, 0, policy("p", 1)).unwrap();
    journal(&mut s, 1, 0);
    create(&mut s, topic("t", 3, "p")).unwrap();
    journal(&mut s, 2, 0);
    apply(
        &mut s,
        0,
        Command::DrainNode {
            role: NodeRole::Journal as i32,
            id: 1,
        },
    )
    .unwrap();
    for p in shards(&s, "t") {
        assert_eq!((p.replicas.clone(), p.leader), (vec![2], 2), "{p:?}");
        assert_eq!(p.epoch, 2);
    }
}

#[test]
fn claiming_a_session_returns_what_was_stored_unless_clean_or_expired() {
    let mut s = State::new(100);
    let claim = |broker, clean, expiry| Command::ClaimSession {
        claim: Pb(ClaimSessionRequest {
            client_id: "c1".into(),
            broker_id: broker,
            clean_start: clean,
            expiry_interval_secs: expiry,
            protocol_version: 5,
            ..Default::default()
        }),
    };
    let Output::Claimed { previous, .. } = apply(&mut s, 0, claim(1, false, 60)).unwrap() else {
        panic!("claimed")
    };
    assert!(previous.is_none());
    let mut stored = s.get::<Session>(&keys::session("c1")).unwrap();
    stored.subscriptions.push(Subscription {
        filter: "a/#".into(),
        qos: 1,
        ..Default::default()
    });
    stored.disconnected_at_ms = 1000;
    apply(
        &mut s,
        1000,
        Command::PutSession {
            session: Pb(stored),
        },
    )
    .unwrap();

    let Output::Claimed { previous, current } = apply(&mut s, 2000, claim(2, false, 60)).unwrap()
    else {
        panic!("claimed")
    };
    let previous = previous.expect("resumable").0;
    assert_eq!(previous.owner_broker, 1);
    assert_eq!(current.0.subscriptions.len(), 1, "subscriptions carry over");
    assert_eq!(
        (current.0.owner_broker, current.0.disconnected_at_ms),
        (2, 0)
    );

    // Disconnected for longer than its expiry: gone, swept.
    let mut stored = current.0;
    stored.disconnected_at_ms = 3000;
    apply(
        &mut s,
        3000,
        Command::PutSession {
            session: Pb(stored),
        },
    )
    .unwrap();
    assert!(!s.needs_sweep(62_999));
    assert!(s.needs_sweep(63_000));
    apply(&mut s, 63_000, Command::Sweep).unwrap();
    assert!(s.get::<Session>(&keys::session("c1")).is_none());
}

fn claim_c1(broker: u64, will: &[u8]) -> Command {
    Command::ClaimSession {
        claim: Pb(ClaimSessionRequest {
            client_id: "c1".into(),
            broker_id: broker,
            expiry_interval_secs: 60,
            protocol_version: 5,
            will: will.to_vec().into(),
            will_delay_secs: 3,
            broker_epoch: 10 * broker,
            ..Default::default()
        }),
    }
}

fn update(session: Session, expected_owner: u64) -> Command {
    Command::UpdateSession {
        session: Pb(session),
        expected_owner,
        expected_epoch: 0,
    }
}

#[test]
fn a_checkpoint_from_a_broker_that_lost_the_claim_is_refused() {
    let mut s = State::new(100);
    let Output::Claimed { current, .. } = apply(&mut s, 0, claim_c1(1, b"")).unwrap() else {
        panic!("claimed")
    };
    let mut checkpoint = current.0.clone();
    checkpoint.progress.push(ShardProgress {
        topic: "t".into(),
        shard: 0,
        offset: 7,
    });
    apply(&mut s, 10, update(checkpoint.clone(), 1)).expect("the owner may write");

    // Broker 2 claims; broker 1's next checkpoint (still naming itself the owner) must
    // not set the owner back.
    apply(&mut s, 20, claim_c1(2, b"")).unwrap();
    let before = s.revision();
    let e = apply(&mut s, 30, update(checkpoint.clone(), 1)).unwrap_err();
    assert!(
        matches!(&e, MetaError::FailedPrecondition(m) if m.contains("broker 2")),
        "{e:?}"
    );
    assert_eq!(s.revision(), before, "a refused write changes nothing");
    let stored = s.get::<Session>(&keys::session("c1")).unwrap();
    assert_eq!(stored.owner_broker, 2);
    assert_eq!(
        stored.progress.len(),
        1,
        "the claim carried the progress over"
    );

    // The old broker's final "disconnected" write is refused too.
    let mut last = checkpoint;
    last.owner_broker = 0;
    last.disconnected_at_ms = 40;
    assert!(apply(&mut s, 40, update(last, 1)).is_err());
    assert_eq!(
        s.get::<Session>(&keys::session("c1")).unwrap().owner_broker,
        2
    );

    // Nothing stored, or no owner to expect: refused as well.
    let mut other = Session {
        client_id: "c2".into(),
        ..Default::default()
    };
    assert!(matches!(
        apply(&mut s, 50, update(other.clone(), 1)),
        Err(MetaError::FailedPrecondition(_))
    ));
    other.client_id = "c1".into();
    assert!(matches!(
        apply(&mut s, 50, update(other, 0)),
        Err(MetaError::InvalidArgument { .. })
    ));
}

#[test]
fn the_will_of_a_dead_owner_is_taken_exactly_once_and_a_reconnect_replaces_it() {
    let mut s = State::new(100);
    let Output::Claimed { current, .. } = apply(&mut s, 0, claim_c1(1, b"w1")).unwrap() else {
        panic!("claimed")
    };
    assert_eq!(
        (&current.0.will[..], current.0.will_delay_secs),
        (&b"w1"[..], 3)
    );

    // Brokers 2 and 3 both saw broker 1 die and both try to take the session from the
    // same listing: only the first write wins (and only its writer publishes the will).
    let mut released = current.0.clone();
    released.owner_broker = 0;
    released.disconnected_at_ms = 1000;
    released.will.clear();
    apply(&mut s, 1000, update(released.clone(), 1)).expect("first taker wins");
    assert!(matches!(
        apply(&mut s, 1001, update(released, 1)),
        Err(MetaError::FailedPrecondition(_))
    ));
    let stored = s.get::<Session>(&keys::session("c1")).unwrap();
    assert_eq!((stored.owner_broker, stored.disconnected_at_ms), (0, 1000));
    assert!(stored.will.is_empty());
    assert!(s.needs_sweep(61_000), "disconnected: the expiry clock runs");

    // A reconnect stores the new connection's will (or none) over the old one.
    apply(&mut s, 2000, claim_c1(3, b"w2")).unwrap();
    assert_eq!(
        &s.get::<Session>(&keys::session("c1")).unwrap().will[..],
        b"w2"
    );
    apply(&mut s, 3000, claim_c1(2, b"")).unwrap();
    assert!(
        s.get::<Session>(&keys::session("c1"))
            .unwrap()
            .will
            .is_empty()
    );
}

#[test]
fn a_broker_restarted_under_the_same_id_takes_its_earlier_runs_sessions_once() {
    let mut s = State::new(100);
    // Broker 1's first run (epoch 10) claimed the session, then broker 1 restarted with
    // epoch 11 before its lease lapsed.
    let Output::Claimed { current, .. } = apply(&mut s, 0, claim_c1(1, b"w")).unwrap() else {
        panic!("claimed")
    };
    assert_eq!(current.0.owner_epoch, 10);
    let conditional = |session: Session, epoch| Command::UpdateSession {
        session: Pb(session),
        expected_owner: 1,
        expected_epoch: epoch,
    };
    let mut released = current.0.clone();
    released.owner_broker = 0;
    released.owner_epoch = 0;
    released.disconnected_at_ms = 500;
    released.will.clear();
    let e = apply(&mut s, 500, conditional(released.clone(), 11)).unwrap_err();
    assert!(
        matches!(&e, MetaError::FailedPrecondition(m) if m.contains("epoch 10")),
        "{e:?}"
    );
    apply(&mut s, 500, conditional(released.clone(), 10)).expect("the earlier run's epoch");
    assert!(
        apply(&mut s, 501, conditional(released, 10)).is_err(),
        "once"
    );

    // A reconnect to the new run claims it with epoch 11; a late release aimed at the
    // earlier run is refused then, too.
    let mut reclaim = claim_c1(1, b"w");
    if let Command::ClaimSession { claim } = &mut reclaim {
        claim.0.broker_epoch = 11;
    }
    apply(&mut s, 600, reclaim).unwrap();
    assert!(apply(&mut s, 700, conditional(current.0, 10)).is_err());
    assert_eq!(
        s.get::<Session>(&keys::session("c1")).unwrap().owner_epoch,
        11
    );
}

#[test]
fn a_pending_will_is_published_or_taken_over_once_and_cancelled_by_a_reconnect() {
    let mut s = State::new(100);
    let Output::Claimed { current, .. } = apply(&mut s, 0, claim_c1(1, b"w")).unwrap() else {
        panic!("claimed")
    };
    // Broker 1 saves the ended connection with its will pending, held by itself.
    let mut pending = current.0.clone();
    pending.owner_broker = 0;
    pending.disconnected_at_ms = 1000;
    (pending.will_holder, pending.will_holder_epoch) = (1, 10);
    pending.will_due_ms = 4000;
    apply(&mut s, 1000, update(pending.clone(), 1)).unwrap();
    let on_will = |session: Session, holder, epoch| Command::UpdateSessionWill {
        session: Pb(session),
        holder,
        holder_epoch: epoch,
    };

    // The session expires at 61 s, but not while its will waits: the will is due by then.
    assert!(!s.needs_sweep(70_000), "a pending will keeps its session");

    // Broker 2 takes the will over from broker 1 (dead): once, and only from broker 1.
    let mut taken = pending.clone();
    (taken.will_holder, taken.will_holder_epoch) = (2, 20);
    assert!(apply(&mut s, 5000, on_will(taken.clone(), 3, 0)).is_err());
    assert!(apply(&mut s, 5000, on_will(taken.clone(), 1, 11)).is_err());
    apply(&mut s, 5000, on_will(taken.clone(), 1, 10)).expect("taken over");
    let e = apply(&mut s, 5001, on_will(taken.clone(), 1, 10)).unwrap_err();
    assert!(
        matches!(&e, MetaError::FailedPrecondition(m) if m.contains("held by broker 2")),
        "{e:?}"
    );
    // A write conditional on the holder cannot give the session an owner.
    let mut owned = taken.clone();
    owned.owner_broker = 2;
    assert!(matches!(
        apply(&mut s, 5002, on_will(owned, 2, 20)),
        Err(MetaError::InvalidArgument { .. })
    ));
    // Published: the holder clears it, and the session may expire.
    let mut cleared = taken.clone();
    cleared.will.clear();
    (
        cleared.will_holder,
        cleared.will_holder_epoch,
        cleared.will_due_ms,
    ) = (0, 0, 0);
    apply(&mut s, 6000, on_will(cleared.clone(), 2, 20)).expect("published once");
    assert!(apply(&mut s, 6001, on_will(cleared, 2, 20)).is_err());
    assert!(s.needs_sweep(70_000));

    // A reconnect cancels a pending will: the holder's write then fails.
    apply(&mut s, 7000, claim_c1(1, b"w")).unwrap();
    apply(&mut s, 7001, update(pending.clone(), 1)).unwrap();
    apply(&mut s, 7002, claim_c1(3, b"")).unwrap();
    let stored = s.get::<Session>(&keys::session("c1")).unwrap();
    assert_eq!(
        (
            stored.will_holder,
            stored.will_holder_epoch,
            stored.will_due_ms
        ),
        (0, 0, 0)
    );
    assert!(apply(&mut s, 7003, on_will(pending, 1, 10)).is_err());
}

#[test]
fn kv_put_with_an_expected_revision_is_a_compare_and_swap() {
    let mut s = State::new(100);
    let put = |v: &str, expected| Command::KvPut {
        key: "lock".into(),
        value: v.as_bytes().to_vec(),
        expected_revision: expected,
    };
    let Output::Revision(r1) = apply(&mut s, 0, put("a", Some(0))).unwrap() else {
        panic!()
    };
    let e = apply(&mut s, 0, put("b", Some(0))).unwrap_err();
    assert!(matches!(e, MetaError::FailedPrecondition(_)), "{e:?}");
    apply(&mut s, 0, put("c", Some(r1))).unwrap();
    assert_eq!(s.get_raw("kv/lock").unwrap().data.as_ref(), b"c");
}

#[test]
fn history_is_bounded_and_reports_compaction() {
    let mut s = State::new(5);
    for i in 0..10 {
        apply(
            &mut s,
            0,
            Command::KvPut {
                key: format!("k{i}"),
                value: vec![1],
                expected_revision: None,
            },
        )
        .unwrap();
    }
    assert!(
        s.changes_since(1).is_none(),
        "revision 1 fell out of the history"
    );
    let recent = s.changes_since(8).expect("still retained");
    assert_eq!(
        recent.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    // An image round trip keeps data and revision but not history.
    let restored = State::from_image(s.image(), 5);
    assert_eq!(restored.revision(), 10);
    assert!(restored.changes_since(10).is_none());
    assert_eq!(restored.changes_since(11).map(|c| c.len()), Some(0));
}

#[test]
fn producer_ids_are_never_handed_out_twice() {
    let mut s = State::new(10);
    let Output::ProducerIds { first_id: a, count } =
        apply(&mut s, 0, Command::AllocateProducerIds { count: 5 }).unwrap()
    else {
        panic!()
    };
    let Output::ProducerIds { first_id: b, .. } =
        apply(&mut s, 0, Command::AllocateProducerIds { count: 1 }).unwrap()
    else {
        panic!()
    };
    assert_eq!(b, a + i64::from(count));
}
