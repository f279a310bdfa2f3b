//! The replicated commands (the Raft log's application data) and their outputs.
//!
//! Proto messages travel inside commands in their protobuf encoding ([`Pb`]), so the
//! public data model is defined once, in `meta.proto`.

use std::fmt;
use std::sync::Arc;

use prost::Message;
use robustmq_proto::meta::{
    AclRule, ClaimSessionRequest, Node, NodeRole, PartitionOffset, RetainedMessage, Session,
    StoragePolicy, Topic, TopicWithShards, User,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::MetaError;

/// A protobuf message carried through serde (bincode) as its protobuf bytes.
#[derive(Clone, PartialEq, Default)]
pub struct Pb<T>(pub T);

impl<T: Message> Serialize for Pb<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, T: Message + Default> Deserialize<'de> for Pb<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        T::decode(bytes.as_slice())
            .map(Pb)
            .map_err(serde::de::Error::custom)
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("protobuf bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

impl<T: fmt::Debug> fmt::Debug for Pb<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Node roles travel as their proto enum number.
pub fn role_from_i32(role: i32) -> NodeRole {
    NodeRole::try_from(role).unwrap_or(NodeRole::Unspecified)
}

/// One state change, applied deterministically by every replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    RegisterNode {
        node: Pb<Node>,
        lease_ttl_ms: u64,
    },
    Heartbeat {
        role: i32,
        id: u64,
        lease_ttl_ms: u64,
    },
    UnregisterNode {
        role: i32,
        id: u64,
    },
    DrainNode {
        role: i32,
        id: u64,
    },
    /// Expires lapsed leases, sessions and retained messages as of the batch's time.
    Sweep,
    PutPolicy {
        policy: Pb<StoragePolicy>,
        create: bool,
    },
    DeletePolicy {
        name: String,
    },
    CreateTopic {
        topic: Pb<Topic>,
    },
    DeleteTopic {
        name: String,
    },
    AddPartitions {
        name: String,
        shards: u32,
    },
    CommitOffsets {
        group: String,
        offsets: Vec<Pb<PartitionOffset>>,
    },
    DeleteGroup {
        group: String,
    },
    PutSession {
        session: Pb<Session>,
    },
    ClaimSession {
        claim: Pb<ClaimSessionRequest>,
    },
    DeleteSession {
        client_id: String,
    },
    SetRetained {
        message: Pb<RetainedMessage>,
    },
    CreateUser {
        user: Pb<User>,
    },
    DeleteUser {
        name: String,
    },
    AddAcl {
        rule: Pb<AclRule>,
    },
    DeleteAcl {
        id: u64,
    },
    AllocateProducerIds {
        count: u32,
    },
    KvPut {
        key: String,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    },
    KvDelete {
        key: String,
    },
    /// A session write that applies only while `expected_owner` (and, if non-zero,
    /// `expected_epoch`) owns the stored session. Appended last so that the encoding of
    /// older log entries is unchanged.
    UpdateSession {
        session: Pb<Session>,
        expected_owner: u64,
        expected_epoch: u64,
    },
    /// A session write that applies only while the session has no owner and its pending
    /// will is held by `holder` (in run `holder_epoch`, unless 0).
    UpdateSessionWill {
        session: Pb<Session>,
        holder: u64,
        holder_epoch: u64,
    },
}

/// What a command returns to its caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Output {
    None,
    Node(Pb<Node>),
    Lease {
        expires_at_ms: u64,
        state: i32,
    },
    Policy(Pb<StoragePolicy>),
    Topic(Pb<TopicWithShards>),
    Session(Pb<Session>),
    Claimed {
        previous: Option<Pb<Session>>,
        current: Pb<Session>,
    },
    User(Pb<User>),
    Acl(Pb<AclRule>),
    ProducerIds {
        first_id: i64,
        count: u32,
    },
    Revision(u64),
}

/// A batch of commands proposed as one Raft entry. `now_ms` is the proposing leader's
/// clock, so that time-dependent commands (leases, expiry) apply identically everywhere.
///
/// The commands are shared: openraft clones an entry for every follower it replicates to
/// and for the state machine, and those clones must not copy every command. The encoding
/// is that of a plain `Vec<Command>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    #[serde(with = "shared")]
    pub commands: Arc<Vec<Command>>,
}

impl Request {
    pub fn new(now_ms: u64, commands: Vec<Command>) -> Self {
        Self {
            now_ms,
            commands: Arc::new(commands),
        }
    }
}

/// Serde of an `Arc<T>` as the `T` it holds.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// One result per command of the [`Request`], in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub results: Vec<Result<Output, MetaError>>,
}
