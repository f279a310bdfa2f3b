//! A publisher's end-to-end window: at most `size` of its messages may be on their way at
//! once. A message leaves the window when every subscriber meant to get it has got it and,
//! at QoS 1, its PUBACK has come back. This keeps the generator closed-loop at both QoS
//! levels: brokers are driven as fast as they deliver, without queues growing for the
//! whole run (which would make latency a function of the run's length).
//!
//! Each message in flight has a slot, `seq % ring`, holding its sequence number and how
//! many events (receipts, PUBACK) it still waits for:
//!
//! ```text
//! slot (u64)   seq (high 44 bits) | remaining (low 20 bits)
//! ```
//!
//! At QoS 1 the packet id is `slot + 1`, so a PUBACK finds its slot without a map; a slot
//! is reused only once its message has left the window, so a packet id is never reused
//! while the broker may still hold it. Events for a message that is no longer in its slot
//! (late duplicates, or messages given up on by [`Window::reclaim`]) are ignored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

const REMAINING_BITS: u32 = 20;
const REMAINING_MASK: u64 = (1 << REMAINING_BITS) - 1;
/// Sequence numbers are compared modulo 2^44; a run never gets near that.
const SEQ_MASK: u64 = (1 << (64 - REMAINING_BITS)) - 1;
/// The most events one message may wait for (receivers + 1 PUBACK).
pub const MAX_EVENTS: u32 = REMAINING_MASK as u32;
/// The largest window: the ring (twice the window) must give packet ids in 1..=65535.
pub const MAX_SIZE: u32 = 16_384;

pub struct Window {
    slots: Box<[AtomicU64]>,
    permits: Semaphore,
}

impl Window {
    /// A window of `size` messages (1..=[`MAX_SIZE`]).
    pub fn new(size: u32) -> Window {
        let size = size.clamp(1, MAX_SIZE);
        let ring = (size as usize * 2).next_power_of_two();
        Window {
            slots: (0..ring).map(|_| AtomicU64::new(0)).collect(),
            permits: Semaphore::new(size as usize),
        }
    }

    fn slot_of(&self, seq: u64) -> usize {
        (seq as usize) & (self.slots.len() - 1)
    }

    /// The MQTT packet id of `seq` at QoS 1.
    pub fn packet_id(&self, seq: u64) -> u16 {
        (self.slot_of(seq) + 1) as u16
    }

    /// Waits for room for one more message, up to `timeout`; false on timeout.
    pub async fn acquire(&self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => {
                p.forget();
                true
            }
            _ => false,
        }
    }

    /// Room for one more message right now?
    pub fn try_acquire(&self) -> bool {
        match self.permits.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Puts `seq` in the window, waiting for `events` events (at least 1). Call after a
    /// successful [`Window::acquire`].
    pub fn arm(&self, seq: u64, events: u32) {
        let events = u64::from(events.clamp(1, MAX_EVENTS));
        self.slots[self.slot_of(seq)].store(
            ((seq & SEQ_MASK) << REMAINING_BITS) | events,
            Ordering::Release,
        );
    }

    /// One event for `seq` (a receipt or its PUBACK); frees its place in the window with
    /// the last one. Returns false if `seq` is not waiting (a duplicate, or given up on).
    pub fn event(&self, seq: u64) -> bool {
        let slot = &self.slots[self.slot_of(seq)];
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            if cur >> REMAINING_BITS != seq & SEQ_MASK || cur & REMAINING_MASK == 0 {
                return false;
            }
            match slot.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if (cur - 1) & REMAINING_MASK == 0 {
                        self.permits.add_permits(1);
                    }
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The PUBACK for `packet_id`: an event for whatever message holds that slot.
    pub fn puback(&self, packet_id: u16) -> bool {
        let Some(slot) = self.slots.get(usize::from(packet_id).wrapping_sub(1)) else {
            return false;
        };
        let seq = slot.load(Ordering::Acquire) >> REMAINING_BITS;
        self.event(seq)
    }

    /// Gives up on every message still in the window (they are lost or stuck) and frees
    /// their places; returns how many. Called when the window has been full for too long.
    pub fn reclaim(&self) -> u64 {
        let mut n = 0;
        for slot in self.slots.iter() {
            let cur = slot.load(Ordering::Acquire);
            if cur & REMAINING_MASK != 0
                && slot
                    .compare_exchange(
                        cur,
                        cur & !REMAINING_MASK,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                n += 1;
            }
        }
        self.permits.add_permits(n as usize);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_leaves_the_window_after_its_last_event_only() {
        let w = Window::new(2);
        let t = Duration::from_millis(50);
        assert!(w.acquire(t).await);
        w.arm(0, 3);
        assert!(w.acquire(t).await);
        w.arm(1, 1);
        assert!(!w.try_acquire(), "window of 2 is full");
        assert!(w.event(0));
        assert!(w.event(0));
        assert!(!w.try_acquire(), "seq 0 still waits for one event");
        assert!(w.event(1));
        assert!(!w.event(1), "a duplicate event is ignored");
        assert!(w.try_acquire());
        assert!(w.event(0));
        assert!(w.try_acquire());
        assert!(!w.acquire(t).await, "both places taken again");
    }

    #[tokio::test]
    async fn puback_finds_its_message_by_packet_id() {
        let w = Window::new(4);
        for seq in 100..104 {
            assert!(w.acquire(Duration::from_millis(50)).await);
            w.arm(seq, 2);
        }
        let pid = w.packet_id(102);
        assert!((1..=8).contains(&pid), "pid {pid}");
        assert!(w.puback(pid));
        assert!(w.event(102), "the receipt completes seq 102");
        assert!(!w.puback(pid), "slot already free");
        assert!(!w.puback(0) && !w.puback(9), "out-of-ring packet ids");
        assert!(w.try_acquire());
    }

    #[tokio::test]
    async fn reclaim_frees_stuck_messages_and_ignores_their_late_events() {
        let w = Window::new(3);
        for seq in 0..3 {
            assert!(w.acquire(Duration::from_millis(50)).await);
            w.arm(seq, 1);
        }
        assert!(w.event(1));
        assert_eq!(w.reclaim(), 2);
        assert!(!w.event(0), "given up on");
        for _ in 0..3 {
            assert!(w.try_acquire());
        }
        assert!(!w.try_acquire());
    }
}
