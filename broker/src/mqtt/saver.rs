//! [`SessionSaver`]: the session writes of this broker's connections, batched into one
//! `UpdateSessions` call to meta.
//!
//! A busy persistent session checkpoints once a second. One `UpdateSession` call per
//! session and second costs a gRPC round trip each on both sides (tens of microseconds of
//! CPU in the broker, more in meta, which is where the meta-service's write limit is
//! spent), so a few thousand busy sessions would keep meta busy with checkpoints alone.
//! Sessions checkpoint on a broker-wide one-second beat (see `session.rs`), and the saver
//! sends whatever queued while its previous call was in flight as one call: an idle
//! broker's single save goes out at once, a busy broker's thousands go out in a few calls.
//! Each update keeps its own owner check and result.

use std::sync::Arc;

use robustmq_proto::meta::{UpdateSessionRequest, UpdateSessionsRequest};
use tokio::sync::{mpsc, oneshot};

use crate::meta::MetaClient;

/// Updates per call (meta accepts up to 1024).
const MAX_BATCH: usize = 512;
/// Saves waiting for a call; a session whose save does not fit waits for room.
const QUEUE: usize = 8192;

type Job = (
    UpdateSessionRequest,
    oneshot::Sender<Result<(), tonic::Status>>,
);

pub struct SessionSaver {
    tx: mpsc::Sender<Job>,
}

impl SessionSaver {
    /// Starts the task that sends the batches. It runs until the saver is dropped, not
    /// until shutdown begins: sessions save themselves as disconnected while shutting down.
    pub fn start(meta: MetaClient) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(meta, rx));
        Arc::new(SessionSaver { tx })
    }

    /// Writes one session update to meta, batched with the others under way; the result
    /// is the one `UpdateSession` would have returned for it alone.
    pub async fn save(&self, req: UpdateSessionRequest) -> Result<(), tonic::Status> {
        let (done, result) = oneshot::channel();
        self.tx.send((req, done)).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

fn stopped() -> tonic::Status {
    tonic::Status::unavailable("the broker is shutting down")
}

async fn run(meta: MetaClient, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (updates, waiters): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        let results = meta
            .client()
            .update_sessions(UpdateSessionsRequest { updates })
            .await
            .map(|r| r.into_inner().results);
        match results {
            Ok(results) if results.len() == waiters.len() => {
                for (w, r) in waiters.into_iter().zip(results) {
                    let code = tonic::Code::from_i32(r.code);
                    let _ = w.send(match code {
                        tonic::Code::Ok => Ok(()),
                        _ => Err(tonic::Status::new(code, r.message)),
                    });
                }
            }
            Ok(results) => {
                let e = tonic::Status::internal(format!(
                    "meta answered {} results for {} session updates",
                    results.len(),
                    waiters.len()
                ));
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }
}
