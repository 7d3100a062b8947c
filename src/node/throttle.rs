//! Failed handshakes throttled per source address: a token bucket per IP.
//!
//! Every handshake that fails before the peer proved the cookie (garbage,
//! a wrong cookie, a bad name, a deadline passed) costs its source address
//! one token; a successful handshake, or one refused after the peer proved
//! the cookie (BUSY, LIMIT), costs nothing. Tokens come back at a steady
//! rate up to the bucket's capacity. While an address has no whole token
//! left, the accept loop closes its new connections at once, unread and
//! without a handshake thread (PROTOCOL.md, "Node handshake").
//!
//! Only addresses with failures are in the table, so an address whose
//! handshakes succeed is never looked up beyond a miss and never closed.
//! The table is bounded ([`MAX_ADDRESSES`]): to make room it first drops
//! the addresses whose bucket is full again (they are indistinguishable
//! from addresses never seen), then the one closest to full. A flood from
//! many addresses can therefore not grow the node's memory; at worst it
//! makes the node forget an address's oldest failures.
//!
//! A bucket is kept as the instant it is full again (`full_at`): a failure
//! moves that instant one [`REFILL`] later (starting from now if it was
//! already full), never more than [`CAPACITY`] refills past now, so an
//! address is never more than `CAPACITY × REFILL` (4 s) from a full bucket.
//! An address has a whole token while `full_at` is at most
//! `(CAPACITY - 1) × REFILL` ahead. The clock is passed in, so the tests
//! drive it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed handshakes an address may have in a burst before its new
/// connections are closed at accept. Generous on purpose: the tests of
/// this repository run many nodes on 127.0.0.1, a few of them with wrong
/// cookies or bad handshakes on purpose, and a cluster restarted with a
/// stale cookie file fails a handful of dials at once; none of that should
/// be throttled. A flood of hundreds per second is.
pub(crate) const CAPACITY: u32 = 32;

/// One token comes back every 125 ms (8 per second). A node whose cookie
/// is wrong redials a peer at most once per `DIAL_BACKOFF` (500 ms, two
/// per second), well under this rate, so a misconfigured node is logged
/// but never throttled; a flood is held to 8 handshakes a second.
pub(crate) const REFILL: Duration = Duration::from_millis(125);

/// Addresses with failures remembered at once (a few hundred kilobytes at
/// most), so a flood from many (or spoofed) addresses cannot grow memory.
pub(crate) const MAX_ADDRESSES: usize = 4096;

/// What the accept loop does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Run the handshake.
    Admit,
    /// Close it at once. `first` is true for the first connection closed
    /// since the address's bucket was last full: the one to log.
    Refuse { first: bool },
}

/// The failures of one address.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket is full again.
    full_at: Instant,
    /// A connection from this address was closed since the bucket was
    /// last full (so the start of throttling is logged once).
    throttled: bool,
}

/// Token buckets of failed handshakes, per source address.
#[derive(Debug)]
pub(crate) struct Throttle {
    buckets: HashMap<IpAddr, Bucket>,
    capacity: u32,
    refill: Duration,
    max_addresses: usize,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(CAPACITY, REFILL, MAX_ADDRESSES)
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) count as
/// the IPv4 address.
fn key(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Throttle {
    /// A throttle with these limits (the node uses [`Throttle::default`]).
    pub(crate) fn new(capacity: u32, refill: Duration, max_addresses: usize) -> Throttle {
        Throttle {
            buckets: HashMap::new(),
            capacity: capacity.max(1),
            refill,
            max_addresses: max_addresses.max(1),
        }
    }

    /// Whether a connection from `ip` arriving at `now` may run a
    /// handshake. Looking costs no token.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let ip = key(ip);
        let Some(b) = self.buckets.get_mut(&ip) else {
            return Admission::Admit;
        };
        if b.full_at <= now {
            // Full again: as good as never seen.
            self.buckets.remove(&ip);
            return Admission::Admit;
        }
        let debt = b.full_at.duration_since(now);
        if debt <= self.refill * (self.capacity - 1) {
            return Admission::Admit;
        }
        let first = !b.throttled;
        b.throttled = true;
        Admission::Refuse { first }
    }

    /// A handshake from `ip` failed at `now`: one token less (none below
    /// zero).
    pub(crate) fn failed(&mut self, ip: IpAddr, now: Instant) {
        let ip = key(ip);
        if !self.buckets.contains_key(&ip) {
            self.make_room(now);
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            full_at: now,
            throttled: false,
        });
        if b.full_at <= now {
            *b = Bucket {
                full_at: now,
                throttled: false,
            };
        }
        let latest = now.checked_add(self.refill * self.capacity);
        let later = b.full_at.checked_add(self.refill);
        b.full_at = match (later, latest) {
            (Some(later), Some(latest)) => later.min(latest),
            // Past what an Instant can hold: keep what there is.
            _ => b.full_at,
        };
    }

    /// Makes room for one more address: drops the full buckets, then, if
    /// still at the bound, the one closest to full.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.max_addresses {
            return;
        }
        self.buckets.retain(|_, b| b.full_at > now);
        while self.buckets.len() >= self.max_addresses {
            let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.full_at)
                .map(|(ip, _)| *ip)
            else {
                return;
            };
            self.buckets.remove(&oldest);
        }
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether `ip` is remembered.
    #[cfg(test)]
    fn remembers(&self, ip: IpAddr) -> bool {
        self.buckets.contains_key(&key(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_of_capacity_failures_is_served_then_the_address_is_refused() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..CAPACITY {
            assert_eq!(t.admit(v4(1), t0), Admission::Admit);
            t.failed(v4(1), t0);
        }
        assert_eq!(t.admit(v4(1), t0), Admission::Refuse { first: true });
        // Logged once: later refusals are not the first.
        assert_eq!(t.admit(v4(1), t0), Admission::Refuse { first: false });
        assert_eq!(
            t.admit(v4(1), t0 + ms(124)),
            Admission::Refuse { first: false }
        );
        // Other addresses are not affected.
        assert_eq!(t.admit(v4(2), t0), Admission::Admit);
    }

    #[test]
    fn tokens_come_back_one_per_refill() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..CAPACITY {
            t.failed(v4(1), t0);
        }
        assert!(matches!(t.admit(v4(1), t0), Admission::Refuse { .. }));
        // One token after one refill interval; spending it empties the
        // bucket again, and that is the same throttling (not logged again).
        let t1 = t0 + REFILL;
        assert_eq!(t.admit(v4(1), t1), Admission::Admit);
        t.failed(v4(1), t1);
        assert_eq!(t.admit(v4(1), t1), Admission::Refuse { first: false });
        // Three refills give three handshakes.
        let t2 = t1 + REFILL * 3;
        for _ in 0..3 {
            assert_eq!(t.admit(v4(1), t2), Admission::Admit);
            t.failed(v4(1), t2);
        }
        assert_eq!(t.admit(v4(1), t2), Admission::Refuse { first: false });
        // Full again: forgotten, and a new burst is logged anew.
        let t3 = t2 + REFILL * CAPACITY;
        assert_eq!(t.admit(v4(1), t3), Admission::Admit);
        assert_eq!(t.len(), 0);
        for _ in 0..CAPACITY {
            t.failed(v4(1), t3);
        }
        assert_eq!(t.admit(v4(1), t3), Admission::Refuse { first: true });
    }

    #[test]
    fn failures_beyond_empty_do_not_dig_deeper() {
        // Handshakes already running when the bucket ran dry still fail
        // and are charged; the address is still a token away after one
        // refill, and full after CAPACITY refills.
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            t.failed(v4(1), t0);
        }
        assert!(matches!(t.admit(v4(1), t0), Admission::Refuse { .. }));
        assert_eq!(t.admit(v4(1), t0 + REFILL), Admission::Admit);
        assert_eq!(t.admit(v4(1), t0 + REFILL * CAPACITY), Admission::Admit);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn spaced_failures_never_throttle() {
        // A misconfigured node redialing every 500 ms (DIAL_BACKOFF) fails
        // slower than tokens come back.
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let now = t0 + ms(500) * i;
            assert_eq!(t.admit(v4(1), now), Admission::Admit, "attempt {i}");
            t.failed(v4(1), now);
        }
    }

    #[test]
    fn addresses_without_failures_are_not_remembered() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..=255 {
            assert_eq!(t.admit(v4(i), t0), Admission::Admit);
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_full_buckets_go_first_then_the_closest_to_full() {
        let mut t = Throttle::new(4, REFILL, 3);
        let t0 = Instant::now();
        // 1: one failure (full at t0 + 125 ms); 2 and 3: four failures.
        t.failed(v4(1), t0);
        for _ in 0..4 {
            t.failed(v4(2), t0);
            t.failed(v4(3), t0);
        }
        assert_eq!(t.len(), 3);
        // A fourth address evicts 1, the closest to full.
        t.failed(v4(4), t0 + ms(1));
        assert_eq!(t.len(), 3);
        assert!(!t.remembers(v4(1)));
        assert!(t.remembers(v4(2)) && t.remembers(v4(3)) && t.remembers(v4(4)));
        // Once 4's bucket is full again it is dropped first, even though 2
        // and 3 failed earlier.
        let later = t0 + ms(200);
        t.failed(v4(5), later);
        assert_eq!(t.len(), 3);
        assert!(!t.remembers(v4(4)));
        assert!(t.remembers(v4(2)) && t.remembers(v4(3)) && t.remembers(v4(5)));
        // Thousands of addresses never grow it past its bound.
        let mut big = Throttle::default();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            big.failed(IpAddr::V4(Ipv4Addr::from(i)), t0);
            assert!(big.len() <= MAX_ADDRESSES);
        }
        assert_eq!(big.len(), MAX_ADDRESSES);
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        let mut t = Throttle::new(1, REFILL, 16);
        let t0 = Instant::now();
        t.failed(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()), t0);
        assert!(matches!(t.admit(v4(1), t0), Admission::Refuse { .. }));
        assert_eq!(
            t.admit(IpAddr::V6(Ipv6Addr::LOCALHOST), t0),
            Admission::Admit
        );
    }
}
