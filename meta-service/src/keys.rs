//! The key layout of the replicated key space (documented for clients in `meta.proto`).
//!
//! Keys sort so that prefix scans list one kind of object, and numbers are zero-padded so
//! that shards and ACLs list in numeric order.

use robustmq_proto::meta::NodeRole;

pub const NODES: &str = "nodes/";
pub const LEASES: &str = "leases/";
pub const POLICIES: &str = "policies/";
pub const TOPICS: &str = "topics/";
pub const SHARDS: &str = "shards/";
pub const OFFSETS: &str = "offsets/";
pub const SESSIONS: &str = "sessions/";
pub const RETAINED: &str = "retained/";
pub const USERS: &str = "users/";
pub const ACLS: &str = "acls/";
pub const KV: &str = "kv/";

pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Broker => "broker",
        NodeRole::Journal => "journal",
        NodeRole::Unspecified => "unspecified",
    }
}

pub fn node(role: NodeRole, id: u64) -> String {
    format!("{NODES}{}/{id}", role_name(role))
}

pub fn nodes_of(role: NodeRole) -> String {
    format!("{NODES}{}/", role_name(role))
}

pub fn lease(role: NodeRole, id: u64) -> String {
    format!("{LEASES}{}/{id}", role_name(role))
}

pub fn policy(name: &str) -> String {
    format!("{POLICIES}{name}")
}

pub fn topic(name: &str) -> String {
    format!("{TOPICS}{name}")
}

pub fn shards_of(topic: &str) -> String {
    format!("{SHARDS}{topic}/")
}

pub fn shard(topic: &str, shard: u32) -> String {
    format!("{SHARDS}{topic}/{shard:06}")
}

/// Escapes a free-form key component so that it cannot contain the separator `/`.
pub fn escape(component: &str) -> String {
    component.replace('%', "%25").replace('/', "%2F")
}

pub fn unescape(component: &str) -> String {
    component.replace("%2F", "/").replace("%25", "%")
}

pub fn group_offsets(group: &str) -> String {
    format!("{OFFSETS}{}/", escape(group))
}

pub fn offset(group: &str, topic: &str, partition: u32) -> String {
    format!("{OFFSETS}{}/{topic}/{partition:06}", escape(group))
}

pub fn session(client_id: &str) -> String {
    format!("{SESSIONS}{client_id}")
}

pub fn retained(topic: &str) -> String {
    format!("{RETAINED}{topic}")
}

pub fn user(name: &str) -> String {
    format!("{USERS}{name}")
}

pub fn acl(id: u64) -> String {
    format!("{ACLS}{id:020}")
}

pub fn kv(key: &str) -> String {
    format!("{KV}{key}")
}
