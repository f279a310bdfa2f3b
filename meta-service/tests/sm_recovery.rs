//! The state machine recovers from sled as the latest snapshot plus the change batches
//! applied after it.

use meta_service::raft::state_machine::StateMachineStore;
use meta_service::store::{Command, Request};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

fn put(index: u64) -> Entry<meta_service::raft::TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request::new(
            0,
            vec![Command::KvPut {
                key: format!("k{index}"),
                value: index.to_be_bytes().to_vec(),
                expected_revision: None,
            }],
        )),
    }
}

#[tokio::test]
async fn reopening_restores_snapshot_plus_later_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path().join("state"))
        .open()
        .expect("open sled");
    {
        let mut sm = StateMachineStore::open(&db, 100).expect("open");
        sm.apply((1..=5).map(put)).await.expect("apply");
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.expect("snapshot");
        sm.apply((6..=10).map(put)).await.expect("apply");
        sm.shared().drain_writes().expect("drain");
    }
    let mut sm = StateMachineStore::open(&db, 100).expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(10));
    let shared = sm.shared();
    let state = shared.state.read().expect("state");
    assert_eq!(state.revision(), 10);
    for i in 1..=10u64 {
        let v = state.get_raw(&format!("kv/k{i}")).expect("key restored");
        assert_eq!(v.data.as_ref(), i.to_be_bytes());
        assert_eq!(v.mod_revision, i);
    }
    // Watchers can still resume from the batches after the snapshot.
    assert_eq!(state.changes_since(6).map(|c| c.len()), Some(5));
}
