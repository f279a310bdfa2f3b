//! A session's state that outlives a connection, and how it is saved in meta.
//!
//! Meta's `Session` holds subscriptions and per-shard progress in typed fields and
//! "inflight" as opaque bytes; the broker stores [`SavedInflight`] there as JSON:
//! outgoing QoS 1/2 messages not yet acknowledged (by shard and offset, so the record is
//! re-read from storage rather than copied into meta) and incoming QoS 2 packet ids
//! still waiting for PUBREL.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mqtt_codec::{QoS, RetainHandling, SubscriptionOptions, topic};
use robustmq_proto::meta;
use serde::{Deserialize, Serialize};

/// A shard: (topic, index). The name is shared (`Arc<str>`) because a key travels with
/// every delivery: cloning it must not allocate.
pub type ShardKey = (std::sync::Arc<str>, u32);

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// The filter topics are matched against (without any `$share/group/` prefix).
    pub filter: String,
    pub share_group: Option<String>,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
    pub id: Option<u32>,
}

impl Sub {
    /// From a SUBSCRIBE entry; `None` if the filter is invalid.
    pub fn new(full: &str, o: &SubscriptionOptions, id: Option<u32>) -> Option<Sub> {
        if !topic::is_valid_topic_filter(full) {
            return None;
        }
        let (filter, share_group) = match topic::parse_shared(full) {
            Some(s) => (s.filter.to_string(), Some(s.group.to_string())),
            None => (full.to_string(), None),
        };
        Some(Sub {
            filter,
            share_group,
            qos: o.qos,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: o.retain_handling,
            id,
        })
    }

    fn to_meta(&self) -> meta::Subscription {
        meta::Subscription {
            filter: self.filter.clone(),
            qos: self.qos as u32,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling as u32,
            subscription_id: self.id.unwrap_or(0),
            share_group: self.share_group.clone().unwrap_or_default(),
        }
    }

    fn from_meta(s: &meta::Subscription) -> Sub {
        Sub {
            filter: s.filter.clone(),
            share_group: (!s.share_group.is_empty()).then(|| s.share_group.clone()),
            qos: QoS::from_u8(s.qos.min(2) as u8).unwrap_or_default(),
            no_local: s.no_local,
            retain_as_published: s.retain_as_published,
            retain_handling: match s.retain_handling {
                1 => RetainHandling::SendAtNewSubscribe,
                2 => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            },
            id: (s.subscription_id != 0).then_some(s.subscription_id),
        }
    }

    /// The key a session stores the subscription under: the filter as subscribed.
    pub fn full_filter(&self) -> String {
        match &self.share_group {
            Some(g) => format!("$share/{g}/{}", self.filter),
            None => self.filter.clone(),
        }
    }
}

/// An outgoing QoS 1/2 message still unacknowledged when the connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOut {
    pub topic: String,
    pub shard: u32,
    pub offset: u64,
    pub packet_id: u16,
    /// PUBREC was received: only PUBREL/PUBCOMP remain.
    pub released: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedInflight {
    pub out: Vec<SavedOut>,
    pub awaiting_rel: Vec<u16>,
}

/// What a session carries from one connection to the next.
#[derive(Debug, Clone, Default)]
pub struct Persistent {
    pub subs: BTreeMap<String, Sub>,
    pub progress: HashMap<ShardKey, u64>,
    pub inflight: SavedInflight,
}

impl Persistent {
    pub fn from_meta(s: &meta::Session) -> Persistent {
        let subs = s
            .subscriptions
            .iter()
            .map(Sub::from_meta)
            .map(|sub| (sub.full_filter(), sub))
            .collect();
        let progress = s
            .progress
            .iter()
            .map(|p| ((p.topic.as_str().into(), p.shard), p.offset.max(0) as u64))
            .collect();
        let inflight = if s.inflight.is_empty() {
            SavedInflight::default()
        } else {
            serde_json::from_slice(&s.inflight).unwrap_or_else(|e| {
                tracing::warn!(client_id = %s.client_id, error = %e, "unreadable saved inflight state");
                SavedInflight::default()
            })
        };
        Persistent {
            subs,
            progress,
            inflight,
        }
    }

    /// The session as meta stores it. `owner` is the broker holding the live connection
    /// (0 once it has ended, when the disconnect time starts the expiry clock).
    pub fn to_meta(
        &self,
        client_id: &str,
        expiry_secs: u32,
        version: u8,
        owner: u64,
    ) -> meta::Session {
        let mut progress: Vec<meta::ShardProgress> = self
            .progress
            .iter()
            .map(|((t, s), o)| meta::ShardProgress {
                topic: t.to_string(),
                shard: *s,
                offset: *o as i64,
            })
            .collect();
        progress.sort_by(|a, b| (&a.topic, a.shard).cmp(&(&b.topic, b.shard)));
        meta::Session {
            client_id: client_id.to_string(),
            owner_broker: owner,
            expiry_interval_secs: expiry_secs,
            disconnected_at_ms: if owner == 0 { super::now_ms() } else { 0 },
            subscriptions: self.subs.values().map(Sub::to_meta).collect(),
            progress,
            inflight: serde_json::to_vec(&self.inflight)
                .unwrap_or_default()
                .into(),
            protocol_version: version as u32,
            // The will is the connection's, not the session's: `Session::to_meta` adds it.
            ..Default::default()
        }
    }
}

/// Incoming QoS 2 packet ids stored but not yet released (PUBREL).
pub type AwaitingRel = BTreeSet<u16>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_round_trips_through_meta() {
        let mut p = Persistent::default();
        let o = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        for f in ["a/+", "$share/g/b/#"] {
            let s = Sub::new(f, &o, Some(7)).unwrap();
            p.subs.insert(s.full_filter(), s);
        }
        p.progress.insert(("default".into(), 0), 42);
        p.inflight.awaiting_rel.push(9);
        p.inflight.out.push(SavedOut {
            topic: "default".into(),
            shard: 0,
            offset: 40,
            packet_id: 3,
            released: true,
        });
        let back = Persistent::from_meta(&p.to_meta("c", 60, 5, 0));
        assert_eq!(back.subs, p.subs);
        assert!(back.subs.contains_key("$share/g/b/#"));
        assert_eq!(back.progress, p.progress);
        assert_eq!(back.inflight, p.inflight);
        assert!(Sub::new("a/#/b", &o, None).is_none());
    }
}
