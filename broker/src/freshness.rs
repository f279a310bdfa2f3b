//! Keeps a broker's caches of meta state (live brokers, topics, ACL rules) fresh.
//!
//! A cache is re-read as soon as meta reports a change under its key prefix (a meta
//! `Watch`), and at a fixed period as the backstop for what a watch cannot see (a lapsed
//! lease changes no key under `nodes/`) and for a broken watch. Polling alone left every
//! other broker up to one period behind: a broker that had just joined was missing from
//! the others' Kafka metadata, and librdkafka drops brokers missing from a metadata
//! answer, which could leave a consumer that bootstrapped through the new broker stuck.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use robustmq_proto::meta::WatchRequest;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::meta::MetaClient;

/// Runs `refresh` now, after every change under `prefix`, and at least every `every`, until
/// cancelled. `what` names the cache in warnings.
pub async fn keep_fresh<F, Fut, T, E>(
    meta: MetaClient,
    prefix: &str,
    every: Duration,
    cancel: CancellationToken,
    what: &'static str,
    mut refresh: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let wake = Arc::new(Notify::new());
    let watcher = tokio::spawn(wake_on_change(
        meta,
        prefix.to_string(),
        wake.clone(),
        cancel.clone(),
    ));
    while !cancel.is_cancelled() {
        if let Err(e) = refresh().await {
            tracing::warn!(error = %e, "refreshing {what}");
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(every) => {}
            // A permit stored while `refresh` ran makes this ready at once, so a change
            // that raced a refresh is still read.
            _ = wake.notified() => {}
        }
    }
    watcher.abort();
}

/// Wakes `wake` on every change under `prefix`, and each time the watch is (re)opened:
/// changes made while no watch was open are then read by the refresh that follows.
async fn wake_on_change(
    meta: MetaClient,
    prefix: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let opened = meta
            .client()
            .watch(WatchRequest {
                prefix: prefix.clone(),
                from_revision: 0,
            })
            .await;
        match opened {
            Ok(stream) => {
                backoff = Duration::from_millis(200);
                wake.notify_one();
                let mut stream = stream.into_inner();
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(r)) if !r.events.is_empty() || r.compacted => wake.notify_one(),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, %prefix, "meta watch ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, %prefix, "opening a meta watch"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
