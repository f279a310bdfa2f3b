//! The gRPC face of a journal node: `JournalService` (see `proto/proto/journal.proto`) plus
//! server reflection, served by tonic with message-size limits from the config.

mod service;
pub mod status;

use std::sync::Arc;

use robustmq_proto::journal::journal_service_server::JournalServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use service::{JournalGrpc, Limits};

use crate::metrics::Metrics;
use crate::registry::ShardManager;

/// Serves JournalService and reflection on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    shards: Arc<ShardManager>,
    metrics: Arc<Metrics>,
    limits: Limits,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Room for the batches plus the request's own framing.
    let max_msg = limits.max_append_bytes + 64 * 1024;
    let svc = JournalServiceServer::new(JournalGrpc::new(shards, metrics, limits, cancel.clone()))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(limits.max_read_bytes.max(max_msg) + 64 * 1024);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(robustmq_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    // Appends carry whole record batches: large frames and windows keep a MiB append to a
    // few frames instead of h2's default 16 KiB ones.
    let mut router = tonic::transport::Server::builder()
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .add_service(svc);
    if let Some(r) = reflection {
        router = router.add_service(r);
    } else {
        tracing::warn!("gRPC reflection unavailable: the descriptor set did not load");
    }
    router
        // Brokers wait on every append and read answer: without TCP_NODELAY, Nagle's
        // algorithm meeting the peer's delayed ACK adds ~40 ms to small responses.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            cancel.cancelled_owned(),
        )
        .await
}
