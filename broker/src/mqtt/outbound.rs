//! [`Outbound`]: messages on their way to one client. QoS 0 goes out at once; QoS 1/2
//! get a packet id and wait in the inflight window (the smaller of the client's Receive
//! Maximum and our limit) until acknowledged; the rest queue in order.
//!
//! A resumed session re-sends what was inflight when its last connection ended with the
//! same packet ids and DUP set, or only PUBREL for QoS 2 messages whose PUBREC had
//! arrived, so that QoS 2 stays exactly once across a reconnect.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{Packet, Properties, PubRel, Publish, QoS};

use super::dispatch::HeldShared;
use super::now_ms;
use super::share_unfinished::Ticket;
use super::state::{SavedInflight, SavedOut, ShardKey};
use crate::storage::record::MqttRecord;

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct OutMsg {
    /// Where it is stored (`None` for retained messages sent on subscribe).
    pub source: Option<(ShardKey, u64)>,
    pub record: Arc<MqttRecord>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// Delivered to this client at QoS 1/2 as one member of a share group: the group
    /// counts the record unfinished until this is dropped
    /// ([`super::share_unfinished`]).
    pub ticket: Option<Ticket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// QoS 1 sent, waiting for PUBACK.
    Ack,
    /// QoS 2 sent, waiting for PUBREC.
    Rec,
    /// PUBREL sent, waiting for PUBCOMP.
    Comp,
}

#[derive(Debug)]
struct Inflight {
    msg: OutMsg,
    stage: Awaiting,
}

/// What an acknowledgement from the client did.
#[derive(Debug, PartialEq, Eq)]
pub enum AckResult {
    Done,
    /// Send this PUBREL.
    Release(u16),
    UnknownId,
}

#[derive(Debug)]
pub struct Outbound {
    inflight: BTreeMap<u16, Inflight>,
    pending: VecDeque<OutMsg>,
    next_pid: u16,
    window: usize,
    max_queued: usize,
    /// Saved inflight entries of a resumed session, by source; consumed on catch-up.
    resume: HashMap<(ShardKey, u64), (u16, bool)>,
    pub dropped: u64,
}

impl Outbound {
    pub fn new(window: u16, max_queued: usize) -> Self {
        Outbound {
            inflight: BTreeMap::new(),
            pending: VecDeque::new(),
            next_pid: 1,
            window: window.max(1) as usize,
            max_queued,
            resume: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn restore(&mut self, saved: &SavedInflight) {
        for s in &saved.out {
            self.resume.insert(
                ((s.topic.as_str().into(), s.shard), s.offset),
                (s.packet_id, s.released),
            );
        }
    }

    /// Queues a message and returns the packets that can go out now.
    pub fn enqueue(&mut self, msg: OutMsg, out: &mut Vec<Packet>) {
        if !self.resume.is_empty()
            && let Some(src) = &msg.source
            && let Some((pid, released)) = self.resume.remove(src)
            && msg.qos != QoS::AtMostOnce
        {
            // Redelivery of a message inflight when the last connection ended.
            if released {
                out.push(Packet::PubRel(PubRel::new(pid)));
                self.inflight.insert(
                    pid,
                    Inflight {
                        msg,
                        stage: Awaiting::Comp,
                    },
                );
            } else if let Some(p) = to_publish(&msg, pid, true) {
                out.push(Packet::Publish(p));
                let stage = stage_for(msg.qos);
                self.inflight.insert(pid, Inflight { msg, stage });
            }
            return;
        }
        if msg.qos == QoS::AtMostOnce && self.pending.is_empty() {
            if let Some(p) = to_publish(&msg, 0, false) {
                out.push(Packet::Publish(p));
            }
            return;
        }
        if self.pending.len() >= self.max_queued && msg.qos == QoS::AtMostOnce {
            // A slow client loses QoS 0 messages first, as MQTT allows.
            self.dropped += 1;
            return;
        }
        self.pending.push_back(msg);
        self.pump(out);
    }

    /// Moves queued messages into the window while there is room.
    fn pump(&mut self, out: &mut Vec<Packet>) {
        while let Some(front) = self.pending.front() {
            if front.qos != QoS::AtMostOnce && self.inflight.len() >= self.window {
                return;
            }
            let Some(msg) = self.pending.pop_front() else {
                return;
            };
            if msg.qos == QoS::AtMostOnce {
                if let Some(p) = to_publish(&msg, 0, false) {
                    out.push(Packet::Publish(p));
                }
                continue;
            }
            let pid = self.alloc_pid();
            if let Some(p) = to_publish(&msg, pid, false) {
                out.push(Packet::Publish(p));
                let stage = stage_for(msg.qos);
                self.inflight.insert(pid, Inflight { msg, stage });
            }
        }
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            let pid = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&pid) && !self.resume.values().any(|(p, _)| *p == pid) {
                return pid;
            }
        }
    }

    pub fn on_puback(&mut self, pid: u16, out: &mut Vec<Packet>) -> AckResult {
        self.finish(pid, Awaiting::Ack, out)
    }

    pub fn on_pubcomp(&mut self, pid: u16, out: &mut Vec<Packet>) -> AckResult {
        self.finish(pid, Awaiting::Comp, out)
    }

    pub fn on_pubrec(&mut self, pid: u16, failed: bool, out: &mut Vec<Packet>) -> AckResult {
        match self.inflight.get_mut(&pid) {
            Some(i) if i.stage == Awaiting::Rec => {
                if failed {
                    // A PUBREC with an error code ends the exchange.
                    self.inflight.remove(&pid);
                    self.pump(out);
                    return AckResult::Done;
                }
                i.stage = Awaiting::Comp;
                // The client has it: from here on its group is done with it.
                i.msg.ticket = None;
                AckResult::Release(pid)
            }
            // A repeated PUBREC: answer with PUBREL again.
            Some(i) if i.stage == Awaiting::Comp => AckResult::Release(pid),
            _ => AckResult::UnknownId,
        }
    }

    fn finish(&mut self, pid: u16, stage: Awaiting, out: &mut Vec<Packet>) -> AckResult {
        match self.inflight.get(&pid) {
            Some(i) if i.stage == stage => {
                self.inflight.remove(&pid);
                self.pump(out);
                AckResult::Done
            }
            _ => AckResult::UnknownId,
        }
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Per shard, the smallest offset not yet finished (inflight or queued).
    pub fn unfinished(&self) -> HashMap<ShardKey, u64> {
        let mut m: HashMap<ShardKey, u64> = HashMap::new();
        let sources = self
            .inflight
            .values()
            .map(|i| &i.msg)
            .chain(self.pending.iter())
            .filter_map(|m| m.source.as_ref());
        for (key, off) in sources {
            let e = m.entry(key.clone()).or_insert(*off);
            *e = (*e).min(*off);
        }
        m
    }

    /// The stored shared QoS 1/2 messages the client has not received for sure: queued,
    /// or sent and not acknowledged (PUBACK or PUBREC). A QoS 2 message whose PUBREC
    /// arrived is the client's already and is left out, or the group would get it twice.
    pub fn held_shared(&self) -> Vec<HeldShared> {
        self.inflight
            .values()
            .filter(|i| i.stage != Awaiting::Comp)
            .map(|i| &i.msg)
            .chain(self.pending.iter())
            .filter(|m| m.ticket.is_some())
            .filter_map(|m| {
                let (key, offset) = m.source.clone()?;
                Some(HeldShared {
                    key,
                    offset,
                    record: m.record.clone(),
                    ticket: m.ticket.clone(),
                })
            })
            .collect()
    }

    /// The inflight QoS 1/2 messages with a stored source, for saving.
    pub fn saved(&self) -> Vec<SavedOut> {
        let mut v: Vec<SavedOut> = self
            .inflight
            .iter()
            .filter_map(|(pid, i)| {
                let ((topic, shard), offset) = i.msg.source.clone()?;
                Some(SavedOut {
                    topic: topic.to_string(),
                    shard,
                    offset,
                    packet_id: *pid,
                    released: i.stage == Awaiting::Comp,
                })
            })
            .collect();
        // Saved entries a resumed session never reached again stay saved.
        v.extend(
            self.resume
                .iter()
                .map(|(((t, s), o), (pid, rel))| SavedOut {
                    topic: t.to_string(),
                    shard: *s,
                    offset: *o,
                    packet_id: *pid,
                    released: *rel,
                }),
        );
        v
    }
}

fn stage_for(qos: QoS) -> Awaiting {
    if qos == QoS::ExactlyOnce {
        Awaiting::Rec
    } else {
        Awaiting::Ack
    }
}

/// The PUBLISH for a message, or `None` if it has expired.
pub fn to_publish(msg: &OutMsg, pid: u16, dup: bool) -> Option<Publish> {
    let r = &msg.record;
    let expiry = match r.expires_at_ms {
        Some(at) => {
            let now = now_ms();
            if at <= now {
                return None;
            }
            Some((at - now).div_ceil(1000) as u32)
        }
        None => None,
    };
    Some(Publish {
        dup,
        qos: msg.qos,
        retain: msg.retain,
        topic: r.topic.clone(),
        packet_id: pid,
        properties: Properties {
            payload_format_indicator: r.payload_format,
            message_expiry_interval: expiry,
            content_type: r.content_type.clone(),
            response_topic: r.response_topic.clone(),
            correlation_data: r.correlation_data.clone(),
            subscription_identifiers: msg.sub_ids.clone(),
            user_properties: r.user_properties.clone(),
            ..Default::default()
        },
        payload: Bytes::clone(&r.payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(qos: QoS, off: u64) -> OutMsg {
        OutMsg {
            source: Some((("t".into(), 0), off)),
            record: Arc::new(MqttRecord {
                topic: "a".into(),
                ..Default::default()
            }),
            qos,
            retain: false,
            sub_ids: vec![],
            ticket: None,
        }
    }

    #[test]
    fn held_shared_is_queued_or_unacknowledged_shared_qos12_only() {
        use crate::mqtt::share_unfinished::Unfinished;
        let mut o = Outbound::new(3, 100);
        let mut out = Vec::new();
        let mut unfinished = Unfinished::default();
        let key: ShardKey = ("t".into(), 0);
        let group = ("g".to_string(), "a".to_string());
        let mut shared = |qos, off| OutMsg {
            // As the dispatcher issues them: shared QoS 1/2 deliveries only.
            ticket: (qos != QoS::AtMostOnce).then(|| unfinished.ticket("g", "a", &key, off)),
            ..msg(qos, off)
        };
        o.enqueue(shared(QoS::AtLeastOnce, 10), &mut out);
        o.enqueue(msg(QoS::AtLeastOnce, 11), &mut out);
        o.enqueue(shared(QoS::ExactlyOnce, 12), &mut out);
        o.enqueue(shared(QoS::AtLeastOnce, 13), &mut out);
        o.enqueue(shared(QoS::AtMostOnce, 14), &mut out);
        o.enqueue(shared(QoS::AtLeastOnce, 15), &mut out);
        let held = |o: &Outbound| -> Vec<u64> {
            let mut v: Vec<u64> = o.held_shared().iter().map(|h| h.offset).collect();
            v.sort_unstable();
            v
        };
        // 10, 11 and 12 are inflight, the rest queued (14 is QoS 0: never held).
        assert_eq!(held(&o), [10, 12, 13, 15]);
        assert_eq!(pids(&out), [1, 2, 3]);
        // PUBREC: the QoS 2 message is the client's now; PUBACK: finished.
        assert_eq!(o.on_pubrec(3, false, &mut out), AckResult::Release(3));
        assert_eq!(o.on_puback(1, &mut out), AckResult::Done);
        assert_eq!(held(&o), [13, 15]);
        assert_eq!(unfinished.lowest_of(&group, &key), Some(13));
        // Finishing the rest (PUBACKs, PUBCOMP) leaves the group nothing unfinished.
        assert_eq!(o.on_puback(2, &mut out), AckResult::Done);
        assert_eq!(o.on_pubcomp(3, &mut out), AckResult::Done);
        assert_eq!(
            pids(&out),
            [1, 2, 3, 4, 0, 5],
            "13 is pid 4, 14 QoS 0, 15 pid 5"
        );
        assert_eq!(o.on_puback(4, &mut out), AckResult::Done);
        assert_eq!(unfinished.lowest_of(&group, &key), Some(15));
        assert_eq!(o.on_puback(5, &mut out), AckResult::Done);
        assert_eq!(unfinished.lowest_of(&group, &key), None);
    }

    fn pids(out: &[Packet]) -> Vec<u16> {
        out.iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.packet_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn window_holds_back_and_acks_release() {
        let mut o = Outbound::new(2, 10);
        let mut out = vec![];
        for i in 0..4 {
            o.enqueue(msg(QoS::AtLeastOnce, i), &mut out);
        }
        assert_eq!(pids(&out), vec![1, 2], "only the window goes out");
        assert_eq!(o.unfinished()[&("t".into(), 0)], 0);
        out.clear();
        assert_eq!(o.on_puback(1, &mut out), AckResult::Done);
        assert_eq!(pids(&out), vec![3]);
        assert_eq!(o.on_puback(1, &mut out), AckResult::UnknownId);
        assert_eq!(o.unfinished()[&("t".into(), 0)], 1);
    }

    #[test]
    fn qos2_goes_through_rec_rel_comp_and_resumes_with_pubrel() {
        let mut o = Outbound::new(4, 10);
        let mut out = vec![];
        o.enqueue(msg(QoS::ExactlyOnce, 5), &mut out);
        assert_eq!(o.on_pubcomp(1, &mut out), AckResult::UnknownId);
        assert_eq!(o.on_pubrec(1, false, &mut out), AckResult::Release(1));
        let saved = SavedInflight {
            out: o.saved(),
            awaiting_rel: vec![],
        };
        assert!(saved.out[0].released);

        // A new connection re-reads offset 5: it must send PUBREL, not the message.
        let mut o2 = Outbound::new(4, 10);
        o2.restore(&saved);
        let mut out2 = vec![];
        o2.enqueue(msg(QoS::ExactlyOnce, 5), &mut out2);
        assert!(matches!(out2.as_slice(), [Packet::PubRel(r)] if r.packet_id == 1));
        assert_eq!(o2.on_pubcomp(1, &mut out2), AckResult::Done);
    }

    #[test]
    fn resumed_qos1_is_resent_with_dup_and_same_id() {
        let saved = SavedInflight {
            out: vec![SavedOut {
                topic: "t".into(),
                shard: 0,
                offset: 9,
                packet_id: 77,
                released: false,
            }],
            awaiting_rel: vec![],
        };
        let mut o = Outbound::new(4, 10);
        o.restore(&saved);
        let mut out = vec![];
        o.enqueue(msg(QoS::AtLeastOnce, 9), &mut out);
        assert!(matches!(out.as_slice(), [Packet::Publish(p)] if p.dup && p.packet_id == 77));
    }
}
