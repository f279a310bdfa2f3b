//! Discovery: Metadata (live brokers, topics with their partition leaders, and
//! auto-creation), DescribeCluster and FindCoordinator.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Conn;
use crate::kafka::topics::KafkaTopic;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_entry(conn: &Conn, t: &KafkaTopic) -> MetadataResponseTopic {
    let partitions = (0..t.partitions as i32)
        .map(|p| {
            let leader = BrokerId(conn.ctx.cluster.partition_leader(&t.name, p));
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(leader)
                // Unknown epoch: there are no replicas to fence, and -1 keeps clients from
                // validating positions with OffsetForLeaderEpoch, which is not served.
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(&t.kafka_name))))
        .with_topic_id(t.id)
        .with_partitions(partitions)
}

fn error_entry(name: &str, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(name))))
        .with_error_code(e.code())
}

pub async fn metadata(conn: &Conn, req: MetadataRequest, version: i16) -> MetadataResponse {
    let ctx = &conn.ctx;
    let brokers = ctx
        .cluster
        .brokers(conn.listener)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(s(b.host))
                .with_port(b.port)
        })
        .collect::<Vec<_>>();
    // v0 has no null: an empty list means every topic there.
    let wanted = match req.topics {
        Some(t) if !(version == 0 && t.is_empty()) => Some(t),
        _ => None,
    };
    let topics = match wanted {
        None => {
            if let Err(e) = ctx.topics.refresh().await {
                tracing::warn!(error = %e, "listing topics for Metadata");
            }
            ctx.topics
                .all()
                .iter()
                .map(|t| topic_entry(conn, t))
                .collect()
        }
        Some(list) => {
            // Auto-creation is the default before v4, where the flag does not exist.
            let auto =
                ctx.settings.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let Some(name) = t.name.map(|n| n.0.to_string()) else {
                    out.push(
                        MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    );
                    continue;
                };
                match ctx.topics.get(&name).await {
                    Some(topic) => out.push(topic_entry(conn, &topic)),
                    None if auto => match ctx.topics.create(&name, -1, &[], false).await {
                        Ok(topic) => out.push(topic_entry(conn, &topic)),
                        Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                            // Another client created it at the same moment.
                            match ctx.topics.get(&name).await {
                                Some(topic) => out.push(topic_entry(conn, &topic)),
                                None => {
                                    out.push(error_entry(&name, ResponseError::LeaderNotAvailable))
                                }
                            }
                        }
                        Err(e) => {
                            tracing::info!(topic = %name, error = %e.message, "auto-creating topic");
                            let code = ResponseError::try_from_code(e.code)
                                .unwrap_or(ResponseError::UnknownServerError);
                            let code = if code == ResponseError::InvalidRequest {
                                ResponseError::InvalidTopicException
                            } else {
                                code
                            };
                            out.push(error_entry(&name, code));
                        }
                    },
                    None => out.push(error_entry(&name, ResponseError::UnknownTopicOrPartition)),
                }
            }
            out
        }
    };
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_topics(topics);
    if version >= 2 {
        resp.cluster_id = Some(s(&ctx.cluster_id));
    }
    resp
}

pub async fn describe_cluster(
    conn: &Conn,
    req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let ctx = &conn.ctx;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(s(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_endpoint_type(req.endpoint_type);
    // Endpoint type 1 is "brokers"; 2 ("controllers") has no separate endpoints here.
    if req.endpoint_type > 1 {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(s("only broker endpoints are served")));
    }
    resp.brokers = ctx
        .cluster
        .brokers(conn.listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(s(b.host))
                .with_port(b.port)
        })
        .collect();
    resp
}

/// Key type 0 is a consumer group; 1 (transactions) is not offered, so it is refused
/// outright rather than left to retry forever on COORDINATOR_NOT_AVAILABLE.
fn find_one(conn: &Conn, key: &str, key_type: i8) -> (i16, Option<String>, i32, String, i32) {
    if key_type != 0 {
        return (
            ResponseError::InvalidRequest.code(),
            Some("transactions are not supported".into()),
            -1,
            String::new(),
            -1,
        );
    }
    let id = conn.ctx.cluster.coordinator(key);
    match conn
        .ctx
        .cluster
        .brokers(conn.listener)
        .into_iter()
        .find(|b| b.id == id)
    {
        Some(b) => (0, None, b.id, b.host, b.port),
        None => (
            ResponseError::CoordinatorNotAvailable.code(),
            Some("the coordinator has no endpoint on this listener".into()),
            -1,
            String::new(),
            -1,
        ),
    }
}

pub async fn find_coordinator(
    conn: &Conn,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let (code, msg, id, host, port) = find_one(conn, k, req.key_type);
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(msg.map(s))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, msg, id, host, port) = find_one(conn, &req.key, req.key_type);
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(id))
        .with_host(s(host))
        .with_port(port);
    if version >= 1 {
        resp.error_message = msg.map(s);
    }
    resp
}
