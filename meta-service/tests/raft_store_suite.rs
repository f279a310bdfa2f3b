//! openraft's own storage test suite, run against the segment-file log store and the sled
//! state machine.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use meta_service::raft::log_store::LogStore;
use meta_service::raft::state_machine::StateMachineStore;
use meta_service::raft::{NodeId, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .expect("open sled");
        let log = LogStore::open(
            &db,
            &dir.path().join("segments"),
            Arc::new(AtomicU64::new(0)),
        )
        .expect("log store");
        let sm = StateMachineStore::open(&db, 1000)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn stores_pass_openraft_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
