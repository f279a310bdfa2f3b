//! A raw Kafka protocol client over one blocking TCP connection, built on the
//! `kafka-protocol` crate, for the tests that real clients cannot express: resending the
//! same idempotent batch, sequence gaps, inspecting the stored batches a Fetch returns,
//! and malformed frames.
//!
//! Versions are negotiated with ApiVersions: each request goes out at the highest version
//! both the server and this module support, capped where a newer version changes the shape
//! this module fills in (Produce and Fetch v13 name topics by id only).
//!
//! ```text
//! request  = int32 size | request header (api key, version, correlation id, client id) | body
//! response = int32 size | response header (correlation id) | body
//! ```

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, FetchResponse, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
    create_topics_request::CreatableTopic,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    BatchDecodeInfo, Compression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};

/// The highest version of each API this module builds requests for.
fn version_cap(api_key: i16) -> i16 {
    match api_key {
        0 => 12, // Produce: v13 names topics by id
        1 => 12, // Fetch: v13 names topics by id
        2 => 9,  // ListOffsets
        3 => 12, // Metadata: v13 only adds an error code
        18 => 3, // ApiVersions
        19 => 7, // CreateTopics
        22 => 5, // InitProducerId
        _ => 0,
    }
}

/// ListOffsets timestamps with a special meaning.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// One connection to a Kafka server.
pub struct Wire {
    stream: TcpStream,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl Wire {
    /// Connects and negotiates API versions.
    pub fn connect(addr: &str) -> Result<Wire> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        stream.set_write_timeout(Some(Duration::from_secs(15)))?;
        stream.set_nodelay(true)?;
        let mut wire = Wire {
            stream,
            correlation: 0,
            versions: HashMap::new(),
        };
        wire.versions = wire.api_versions()?;
        Ok(wire)
    }

    /// ApiVersions v3: the versions the server supports per API key.
    pub fn api_versions(&mut self) -> Result<HashMap<i16, (i16, i16)>> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("robustmq-e2e");
        req.client_software_version = StrBytes::from_static_str("1");
        let resp = self.send(&req, 3)?;
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        Ok(resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The version `R` goes out at on this connection.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        let (min, max) = *self
            .versions
            .get(&R::KEY)
            .with_context(|| format!("the server does not list API key {}", R::KEY))?;
        let v = max.min(version_cap(R::KEY)).min(R::VERSIONS.max);
        if v < min.max(R::VERSIONS.min) {
            bail!(
                "no common version for API key {}: server {min}..={max}",
                R::KEY
            );
        }
        Ok(v)
    }

    /// Sends `req` at the negotiated version and decodes the response.
    pub fn call<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let v = self.version_of::<R>()?;
        self.send(req, v)
    }

    /// Sends `req` at `version` and decodes the response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("robustmq-e2e"));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .with_context(|| format!("sending API key {} v{version}", R::KEY))?;
        let mut buf =
            Bytes::from(self.read_frame().with_context(|| {
                format!("reading the response to API key {} v{version}", R::KEY)
            })?);
        let rh = ResponseHeader::decode(&mut buf, R::Response::header_version(version))?;
        if rh.correlation_id != self.correlation {
            bail!(
                "response correlation id {} for request {}",
                rh.correlation_id,
                self.correlation
            );
        }
        R::Response::decode(&mut buf, version)
            .with_context(|| format!("decoding the response to API key {} v{version}", R::KEY))
    }

    fn read_frame(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 << 20).contains(&len) {
            bail!("response length {len} out of range");
        }
        let mut frame = vec![0u8; len as usize];
        self.stream.read_exact(&mut frame)?;
        Ok(frame)
    }

    /// Writes bytes as they are, for malformed input.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Waits up to `within` for the server to close the connection; returns what it sent
    /// meanwhile. Fails if the connection is still open then.
    pub fn expect_closed(&mut self, within: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + within;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    return Ok(got);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
        bail!(
            "the server kept the connection open for {within:?} (it sent {} bytes)",
            got.len()
        )
    }

    /// Metadata for `topics`, creating them when the server auto-creates topics.
    pub fn metadata(
        &mut self,
        topics: &[&str],
        auto_create: bool,
    ) -> Result<kafka_protocol::messages::MetadataResponse> {
        let mut req = MetadataRequest::default();
        req.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut mt = MetadataRequestTopic::default();
                    mt.name = Some(topic_name(t));
                    mt
                })
                .collect(),
        );
        req.allow_auto_topic_creation = auto_create;
        self.call(&req)
    }

    /// CreateTopics for one topic with `partitions` partitions (replication factor 1);
    /// returns the topic's error code (0, or 36 when it exists already).
    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<i16> {
        let mut t = CreatableTopic::default();
        t.name = topic_name(topic);
        t.num_partitions = partitions;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 15_000;
        let resp = self.call(&req)?;
        let r = resp
            .topics
            .first()
            .context("CreateTopics response without a topic")?;
        Ok(r.error_code)
    }

    /// A fresh idempotent producer id and epoch. Retries for up to 30 s while the
    /// server says its coordinator is loading or not available (14, 15), as clients do
    /// right after a start.
    pub fn init_producer_id(&mut self) -> Result<(i64, i16)> {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = 60_000;
        req.producer_id = kafka_protocol::messages::ProducerId(-1);
        req.producer_epoch = -1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let resp = self.call(&req)?;
            match resp.error_code {
                0 => return Ok((resp.producer_id.0, resp.producer_epoch)),
                14 | 15 if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                code => bail!("InitProducerId failed with error {code}"),
            }
        }
    }

    /// Produces one encoded batch to a partition with acks=all; returns (error code, base
    /// offset).
    pub fn produce(&mut self, topic: &str, partition: i32, batch: Bytes) -> Result<(i16, i64)> {
        let mut pd = PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = topic_name(topic);
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 10_000;
        req.topic_data = vec![td];
        let resp = self.call(&req)?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .context("Produce response without a partition")?;
        Ok((p.error_code, p.base_offset))
    }

    /// ListOffsets for one partition at `timestamp` (or [`EARLIEST`] / [`LATEST`]);
    /// returns (error code, offset, timestamp).
    pub fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i16, i64, i64)> {
        let mut lp = ListOffsetsPartition::default();
        lp.partition_index = partition;
        lp.current_leader_epoch = -1;
        lp.timestamp = timestamp;
        let mut lt = ListOffsetsTopic::default();
        lt.name = topic_name(topic);
        lt.partitions = vec![lp];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.topics = vec![lt];
        let resp = self.call(&req)?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("ListOffsets response without a partition")?;
        Ok((p.error_code, p.offset, p.timestamp))
    }

    /// Fetch from one partition at `offset`; returns the partition's error code, high
    /// watermark and raw record bytes as the server sent them.
    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> Result<Fetched> {
        let mut fp = FetchPartition::default();
        fp.partition = partition;
        fp.current_leader_epoch = -1;
        fp.fetch_offset = offset;
        fp.last_fetched_epoch = -1;
        fp.log_start_offset = -1;
        fp.partition_max_bytes = 1 << 20;
        let mut ft = FetchTopic::default();
        ft.topic = topic_name(topic);
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.max_wait_ms = 500;
        req.min_bytes = 1;
        req.max_bytes = 4 << 20;
        req.session_epoch = -1;
        req.topics = vec![ft];
        let resp: FetchResponse = self.call(&req)?;
        if resp.error_code != 0 {
            bail!("Fetch failed with top-level error {}", resp.error_code);
        }
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("Fetch response without a partition")?;
        Ok(Fetched {
            error_code: p.error_code,
            high_watermark: p.high_watermark,
            records: p.records.clone().unwrap_or_default(),
        })
    }
}

/// What one Fetch returned for one partition.
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Bytes,
}

impl Fetched {
    /// The batch headers (compression, producer id, base offset…) without decompressing.
    pub fn batches(&self) -> Result<Vec<BatchDecodeInfo>> {
        let mut buf = self.records.clone();
        RecordBatchDecoder::decode_batch_info(&mut buf)
    }

    /// Every record, decompressed.
    pub fn records(&self) -> Result<Vec<Record>> {
        let mut buf = self.records.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf)?;
        Ok(sets.into_iter().flat_map(|s| s.records).collect())
    }
}

pub fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// One uncompressed record batch v2 of `values`, with producer id, epoch and first
/// sequence as given (pass -1s for a non-idempotent batch), record i at timestamp
/// `timestamp + i`.
pub fn batch(
    producer_id: i64,
    producer_epoch: i16,
    first_sequence: i32,
    timestamp: i64,
    values: &[&str],
) -> Result<Bytes> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if first_sequence < 0 {
                -1
            } else {
                first_sequence + i as i32
            },
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("k-{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}
