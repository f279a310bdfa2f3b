//! Topic administration (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs)
//! and producer ids (InitProducerId), all backed by meta.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use robustmq_proto::meta::AllocateProducerIdsRequest;
use tokio::sync::Mutex;

use super::Conn;
use crate::kafka::topics::KafkaTopic;
use crate::meta::MetaClient;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub async fn create_topics(
    conn: &Conn,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let configs: Vec<(String, Option<String>)> = t
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if !t.assignments.is_empty() {
            Err(crate::kafka::topics::AdminError::new(
                ResponseError::InvalidReplicaAssignment,
                "replica assignments are decided by the storage policy",
            ))
        } else {
            conn.ctx
                .topics
                .create(
                    t.name.as_str(),
                    t.num_partitions,
                    &configs,
                    req.validate_only,
                )
                .await
        };
        match outcome {
            Ok(topic) => {
                if version >= 5 {
                    r.num_partitions = topic.partitions as i32;
                    r.replication_factor = 1;
                    r.configs = Some(Vec::new());
                }
                if version >= 7 {
                    r.topic_id = topic.id;
                }
            }
            Err(e) => {
                r.error_code = e.code;
                r.error_message = Some(s(e.message));
                if version >= 5 {
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    conn: &Conn,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut out = Vec::with_capacity(req.topic_names.len());
    for name in req.topic_names {
        let mut r = DeletableTopicResult::default().with_name(Some(name.clone()));
        if let Err(e) = conn.ctx.topics.delete(name.as_str()).await {
            r.error_code = e.code;
            if version >= 5 {
                r.error_message = Some(s(e.message));
            }
        }
        out.push(r);
    }
    DeleteTopicsResponse::default().with_responses(out)
}

pub async fn create_partitions(
    conn: &Conn,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let res = if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err(crate::kafka::topics::AdminError::new(
                ResponseError::InvalidReplicaAssignment,
                "replica assignments are decided by the storage policy",
            ))
        } else {
            conn.ctx
                .topics
                .add_partitions(t.name.as_str(), t.count, req.validate_only)
                .await
        };
        if let Err(e) = res {
            r.error_code = e.code;
            r.error_message = Some(s(e.message));
        }
        out.push(r);
    }
    CreatePartitionsResponse::default().with_results(out)
}

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs): dynamic topic config, and the static default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

fn topic_configs(conn: &Conn, t: &KafkaTopic) -> Vec<(String, String, i8)> {
    let retention = t.retention.unwrap_or_default();
    let keep = |v: u64| {
        if v == 0 {
            "-1".to_string()
        } else {
            v.to_string()
        }
    };
    let mut c = vec![
        ("cleanup.policy".into(), "delete".into(), SOURCE_DEFAULT),
        (
            "retention.ms".into(),
            keep(retention.time_ms),
            if retention.time_ms > 0 {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            },
        ),
        (
            "retention.bytes".into(),
            keep(retention.bytes),
            if retention.bytes > 0 {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            },
        ),
        (
            "max.message.bytes".into(),
            conn.ctx.settings.max_message_bytes.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "message.timestamp.type".into(),
            "CreateTime".into(),
            SOURCE_DEFAULT,
        ),
        (
            "robustmq.storage.policy".into(),
            t.policy.clone(),
            SOURCE_TOPIC,
        ),
    ];
    if !t.mqtt_filter.is_empty() {
        c.push((
            "robustmq.mqtt.filter".into(),
            t.mqtt_filter.clone(),
            SOURCE_TOPIC,
        ));
    }
    for (k, v) in &t.config {
        c.push((k.clone(), v.clone(), SOURCE_TOPIC));
    }
    c
}

fn broker_configs(conn: &Conn) -> Vec<(String, String, i8)> {
    let st = &conn.ctx.settings;
    vec![
        (
            "broker.id".into(),
            conn.ctx.cluster.my_id().to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "auto.create.topics.enable".into(),
            st.auto_create_topics.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "num.partitions".into(),
            conn.ctx.topics.defaults.partitions.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "message.max.bytes".into(),
            st.max_message_bytes.to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "socket.request.max.bytes".into(),
            st.max_request_size.to_string(),
            SOURCE_DEFAULT,
        ),
    ]
}

pub async fn describe_configs(
    conn: &Conn,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let mut out = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let entries = match r.resource_type {
            TOPIC => match conn.ctx.topics.get(r.resource_name.as_str()).await {
                Some(t) => Ok(topic_configs(conn, &t)),
                None => Err(ResponseError::UnknownTopicOrPartition),
            },
            BROKER => Ok(broker_configs(conn)),
            _ => Err(ResponseError::InvalidRequest),
        };
        match entries {
            Ok(entries) => {
                let wanted = r.configuration_keys.as_ref();
                out.configs = entries
                    .into_iter()
                    .filter(|(k, _, _)| wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == k)))
                    .map(|(k, v, source)| {
                        let mut e = DescribeConfigsResourceResult::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                            .with_read_only(true)
                            .with_config_source(source);
                        if version >= 3 {
                            e.config_type = 0;
                        }
                        e
                    })
                    .collect();
            }
            Err(e) => {
                out.error_code = e.code();
                out.error_message = Some(s(e.to_string()));
            }
        }
        results.push(out);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Hands out producer ids from blocks allocated in meta, so most InitProducerId calls cost
/// no Raft write.
pub struct ProducerIdPool {
    meta: MetaClient,
    block: Mutex<(i64, i64)>,
}

const BLOCK: u32 = 1000;

impl ProducerIdPool {
    pub fn new(meta: MetaClient) -> Self {
        ProducerIdPool {
            meta,
            block: Mutex::new((0, 0)),
        }
    }

    pub async fn next(&self) -> Result<i64, tonic::Status> {
        let mut b = self.block.lock().await;
        if b.0 >= b.1 {
            let r = self
                .meta
                .client()
                .allocate_producer_ids(AllocateProducerIdsRequest { count: BLOCK })
                .await?
                .into_inner();
            *b = (r.first_id, r.first_id + r.count.max(1) as i64);
        }
        let id = b.0;
        b.0 += 1;
        Ok(id)
    }
}

pub async fn init_producer_id(
    conn: &Conn,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // A producer that had an id asks to bump its epoch after an error (KIP-360).
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match conn.ctx.producer_ids.next().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "allocating a producer id");
            resp.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
