//! One handler per Kafka API, and [`dispatch`], which routes a decoded request to it.
//! Handlers take typed requests and return typed responses; bytes stay in `frame`.

pub mod admin;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::KafkaContext;
use super::cluster::Listener;
use super::group::ClientInfo;

/// What a handler knows about the connection it serves.
pub struct Conn {
    pub ctx: Arc<KafkaContext>,
    pub listener: Listener,
    pub peer: std::net::SocketAddr,
}

/// What to send back.
pub enum Reply {
    Response(Box<ResponseKind>),
    /// acks=0 produce: nothing.
    Nothing,
    /// acks=0 produce that failed: close the connection so the client notices.
    Close,
}

/// Routes a request other than SASL (which the connection handles) to its handler.
pub async fn dispatch(
    conn: &Conn,
    client_id: Option<&str>,
    body: RequestKind,
    version: i16,
) -> Reply {
    let ctx = &conn.ctx;
    let g = &ctx.groups;
    let r = match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(super::versions::api_versions(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(conn, r, version).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(conn, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(metadata::find_coordinator(conn, r, version).await)
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let (resp, failed) = produce::produce(conn, r, version).await;
            return match (acks, failed) {
                (0, false) => Reply::Nothing,
                (0, true) => Reply::Close,
                _ => Reply::Response(Box::new(ResponseKind::Produce(resp))),
            };
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::fetch(conn, r, version).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::list_offsets(conn, r, version).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(conn, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(conn, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(conn, r, version).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(conn, r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(admin::init_producer_id(conn, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            let client = ClientInfo::new(client_id, conn.peer);
            ResponseKind::JoinGroup(g.join_group_from(r, version, client).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(g.sync_group(r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(g.heartbeat(r, version).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(g.leave_group(r, version).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(g.offset_commit(r, version).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(g.offset_fetch(r, version).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(g.list_groups(r, version).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(g.describe_groups(r, version).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(g.delete_groups(r, version).await)
        }
        other => {
            // The decoder only admits served APIs, so this is a table/handler mismatch.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a served API");
            return Reply::Close;
        }
    };
    Reply::Response(Box::new(r))
}
