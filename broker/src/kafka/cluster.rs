//! The live Kafka brokers as this broker sees them, and who "leads" what.
//!
//! Brokers are stateless, so any broker could serve any partition; Kafka clients still
//! want one leader per partition and one coordinator per group. Both are picked by
//! rendezvous (highest random weight) hashing over the live brokers: every broker computes
//! the same answer from the same membership, and a join or leave moves only the keys the
//! changed broker wins or held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use robustmq_proto::meta::NodeState;
use tokio_util::sync::CancellationToken;

use crate::freshness::keep_fresh;
use crate::meta::MetaClient;

/// The node label under which a broker registers its advertised Kafka `host:port`.
pub const KAFKA_LABEL: &str = "kafka";
/// Likewise for the TLS listener.
pub const KAFKA_TLS_LABEL: &str = "kafka_tls";

/// One live broker's Kafka endpoint, as a client of one listener reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// A live broker with the endpoints of both listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i32,
    pub plain: Option<(String, i32)>,
    pub tls: Option<(String, i32)>,
}

/// Which listener a view hands out addresses for: a client on the TLS listener must be
/// sent to the other brokers' TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plain,
    Tls,
}

/// The membership view, refreshed from meta; cheap to clone, shared by both listeners.
#[derive(Clone)]
pub struct Cluster {
    me: Member,
    members: Arc<RwLock<Vec<Member>>>,
    /// Bumped on every membership change, so state tied to "who leads what" (producer
    /// sequences) knows to reload.
    generation: Arc<AtomicU64>,
}

/// Splits `host:port` (IPv6 hosts in brackets).
pub fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// A 64-bit hash that is the same on every broker and every build (FNV-1a, then a
/// splitmix64 finalizer so that nearby ids spread).
fn weight(broker: i32, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in broker.to_be_bytes().iter().chain(key.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Cluster {
    pub fn new(me: Member) -> Self {
        Cluster {
            members: Arc::new(RwLock::new(vec![me.clone()])),
            me,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn my_id(&self) -> i32 {
        self.me.id
    }

    /// Live brokers reachable on `listener`, sorted by id.
    pub fn brokers(&self, listener: Listener) -> Vec<BrokerInfo> {
        let m = self.members.read().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter_map(|b| {
                let (host, port) = match listener {
                    Listener::Plain => b.plain.clone()?,
                    Listener::Tls => b.tls.clone()?,
                };
                Some(BrokerInfo {
                    id: b.id,
                    host,
                    port,
                })
            })
            .collect()
    }

    /// The broker that wins `key`.
    pub fn owner(&self, key: &str) -> i32 {
        let m = self.members.read().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .max_by_key(|x| (weight(x.id, key), x.id))
            .map_or(self.me.id, |x| x.id)
    }

    pub fn partition_leader(&self, topic: &str, partition: i32) -> i32 {
        self.owner(&format!("p/{topic}/{partition}"))
    }

    pub fn coordinator(&self, group: &str) -> i32 {
        self.owner(&format!("g/{group}"))
    }

    /// Replaces the membership; this broker stays in it whatever meta says, because a
    /// broker serving requests is alive even before its registration lands.
    pub fn set(&self, mut members: Vec<Member>) {
        members.retain(|b| b.id != self.me.id);
        members.push(self.me.clone());
        members.sort_by_key(|b| b.id);
        members.dedup_by_key(|b| b.id);
        let mut cur = self.members.write().unwrap_or_else(|p| p.into_inner());
        if *cur != members {
            *cur = members;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes whenever the membership (and so any leadership) may have changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the live brokers with a Kafka listener from meta.
    pub async fn refresh(&self, meta: &MetaClient) -> Result<(), tonic::Status> {
        let live = meta
            .broker_nodes()
            .await?
            .into_iter()
            .filter(|n| n.state == NodeState::Alive as i32)
            .filter_map(|n| {
                let plain = n.labels.get(KAFKA_LABEL).and_then(|a| split_host_port(a));
                let tls = n
                    .labels
                    .get(KAFKA_TLS_LABEL)
                    .and_then(|a| split_host_port(a));
                if plain.is_none() && tls.is_none() {
                    return None;
                }
                Some(Member {
                    id: i32::try_from(n.id).ok()?,
                    plain,
                    tls,
                })
            })
            .collect();
        self.set(live);
        Ok(())
    }

    /// Keeps the view fresh: re-read when a broker registers or leaves, and every `every`
    /// (which is when a lapsed lease is noticed).
    pub async fn run_refresh(self, meta: MetaClient, every: Duration, cancel: CancellationToken) {
        let m = meta.clone();
        keep_fresh(
            meta,
            "nodes/broker/",
            every,
            cancel,
            "Kafka broker list",
            || self.refresh(&m),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: i32) -> Member {
        Member {
            id,
            plain: Some(("127.0.0.1".into(), 9000 + id)),
            tls: None,
        }
    }

    #[test]
    fn every_view_agrees_and_a_leave_moves_only_its_keys() {
        let one = Cluster::new(b(1));
        let two = Cluster::new(b(2));
        one.set(vec![b(1), b(2), b(3)]);
        two.set(vec![b(3), b(1)]);
        let keys: Vec<String> = (0..300).map(|i| format!("t/{i}")).collect();
        for k in &keys {
            assert_eq!(one.owner(k), two.owner(k));
        }
        let before: Vec<i32> = keys.iter().map(|k| one.owner(k)).collect();
        for id in 1..=3 {
            let n = before.iter().filter(|o| **o == id).count();
            assert!(n > 60, "broker {id} owns {n} of 300: badly spread");
        }
        let g = one.generation();
        one.set(vec![b(1), b(3)]);
        assert_ne!(one.generation(), g);
        let g = one.generation();
        one.set(vec![b(3), b(1)]);
        assert_eq!(one.generation(), g, "same membership, same generation");
        for (k, was) in keys.iter().zip(&before) {
            if *was != 2 {
                assert_eq!(one.owner(k), *was, "{k} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn self_is_always_a_member() {
        let c = Cluster::new(b(5));
        c.set(vec![b(1)]);
        assert_eq!(
            c.brokers(Listener::Plain)
                .iter()
                .map(|b| b.id)
                .collect::<Vec<_>>(),
            [1, 5]
        );
        assert!(c.brokers(Listener::Tls).is_empty());
        assert_eq!(
            split_host_port("[::1]:9092"),
            Some(("::1".to_string(), 9092))
        );
        assert_eq!(split_host_port("nohost"), None);
    }
}
