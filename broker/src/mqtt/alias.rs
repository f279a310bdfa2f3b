//! Outgoing topic aliases (MQTT 5): a client that announces a Topic Alias Maximum in its
//! CONNECT gets each topic in full once, with an alias, and then the alias alone, which
//! saves the topic's bytes on every later PUBLISH (IoT topics are long and repeat).
//!
//! Aliases belong to one connection. When all are taken, the next new topic takes over
//! the slots in turn: the client learns the new mapping from that PUBLISH, as MQTT allows.

use std::collections::HashMap;

use mqtt_codec::Publish;

/// Bytes a first use can add to a PUBLISH: the alias property (3), plus one more byte
/// each for the property length and the remaining length growing a varint byte.
pub const FIRST_USE_OVERHEAD: usize = 5;

/// The aliases in use on one connection.
#[derive(Debug, Default)]
pub struct OutAliases {
    by_topic: HashMap<String, u16>,
    /// Slot `i` holds the topic of alias `i + 1`.
    slots: Vec<String>,
    max: u16,
    /// The slot the next new topic takes once all are in use.
    next_victim: usize,
}

impl OutAliases {
    /// Up to `max` aliases (0: none; the client's Topic Alias Maximum, capped by the broker).
    pub fn new(max: u16) -> Self {
        OutAliases {
            max,
            ..Default::default()
        }
    }

    /// Rewrites `p` to use an alias: the topic with a new alias the first time (or when
    /// its slot is reused), then the alias with an empty topic.
    pub fn apply(&mut self, p: &mut Publish) {
        if self.max == 0 || p.topic.is_empty() {
            return;
        }
        if let Some(&alias) = self.by_topic.get(&p.topic) {
            p.properties.topic_alias = Some(alias);
            p.topic.clear();
            return;
        }
        let alias = if self.slots.len() < self.max as usize {
            self.slots.push(p.topic.clone());
            self.slots.len() as u16
        } else {
            let slot = self.next_victim;
            self.next_victim = (slot + 1) % self.slots.len();
            let old = std::mem::replace(&mut self.slots[slot], p.topic.clone());
            self.by_topic.remove(&old);
            slot as u16 + 1
        };
        self.by_topic.insert(p.topic.clone(), alias);
        p.properties.topic_alias = Some(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::{Packet, ProtocolVersion};

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: mqtt_codec::QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: 0,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"x"),
        }
    }

    /// What a client resolving aliases sees: (topic, alias) per PUBLISH.
    fn send(a: &mut OutAliases, topics: &[&str]) -> Vec<(String, Option<u16>)> {
        topics
            .iter()
            .map(|t| {
                let mut p = publish(t);
                a.apply(&mut p);
                (p.topic, p.properties.topic_alias)
            })
            .collect()
    }

    #[test]
    fn topics_are_sent_once_then_by_alias_and_slots_are_reused_in_turn() {
        let mut a = OutAliases::new(2);
        let got = send(
            &mut a,
            &["a/1", "a/1", "a/2", "a/2", "a/3", "a/3", "a/2", "a/1"],
        );
        let s = |t: &str| t.to_string();
        assert_eq!(
            got,
            [
                (s("a/1"), Some(1)),
                (s(""), Some(1)),
                (s("a/2"), Some(2)),
                (s(""), Some(2)),
                // Both in use: a/3 takes alias 1 (a/1 loses it), then a/1 takes alias 2.
                (s("a/3"), Some(1)),
                (s(""), Some(1)),
                (s(""), Some(2)),
                (s("a/1"), Some(2)),
            ]
        );
        // Resolving like a client does gives back every topic.
        let mut client: HashMap<u16, String> = HashMap::new();
        let topics = ["b/1", "b/2", "b/3", "b/1", "b/4", "b/2", "b/2"];
        for (t, (sent, alias)) in topics.iter().zip(send(&mut a, &topics)) {
            let alias = alias.unwrap();
            assert!((1..=2).contains(&alias));
            if !sent.is_empty() {
                client.insert(alias, sent.clone());
            }
            assert_eq!(&client[&alias], t);
        }
    }

    #[test]
    fn no_aliases_without_a_maximum_and_first_use_stays_within_the_overhead() {
        let mut none = OutAliases::new(0);
        assert_eq!(
            send(&mut none, &["a", "a"]),
            [("a".into(), None), ("a".into(), None)]
        );

        let mut a = OutAliases::new(10);
        for topic_len in [1usize, 100, 120, 125, 130, 16_000] {
            let topic = "t".repeat(topic_len);
            let plain = Packet::Publish(publish(&topic)).encoded_len(ProtocolVersion::V5);
            let mut p = publish(&topic);
            a.apply(&mut p);
            let first = Packet::Publish(p).encoded_len(ProtocolVersion::V5);
            assert!(
                first <= plain + FIRST_USE_OVERHEAD,
                "{topic_len}: {plain} -> {first}"
            );
        }
    }
}
