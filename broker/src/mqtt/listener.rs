//! The TCP listener: accepts sockets until shutdown and serves each on its own task.
//! The connection limit is enforced after CONNECT (so the refusal can carry a reason
//! code); sockets are tracked so shutdown waits for sessions to save their state.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::Context;
use super::handlers::connect;

pub async fn serve_tcp(listener: TcpListener, ctx: Arc<Context>, tasks: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tasks.spawn(connect::serve(ctx.clone(), Box::new(stream), peer));
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
