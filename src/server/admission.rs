//! Admission control before authentication (compare OpenSSH's MaxStartups and
//! PerSourcePenalties). Connections that have not yet presented an authorized
//! key ("strangers") get a pool of their own, smaller than the connection cap,
//! so that strangers holding sockets open cannot take the places of clients.
//!
//! - A connection stays a stranger until its ClientAuth signature verifies:
//!   a public key is public, so a hello that merely names an authorized key
//!   proves nothing and takes no place outside the pool.
//! - When the pool is full, a new connection evicts the oldest stranger that
//!   has had at least [`MIN_STRANGER_AGE`] to finish its handshake (a real
//!   client does so within a few round trips, so it leaves the pool long
//!   before; a socket held open in silence is what gets evicted). If every
//!   stranger is younger than that, the newcomer is refused as busy, so a
//!   burst of connections cannot evict each other before they speak; only a
//!   newcomer whose hello names an authorized key may take the place of a
//!   young stranger that has not named one.
//! - Failed handshakes are counted per source (an IPv4 address, an IPv6 /64)
//!   in a token bucket. An
//!   address out of tokens is "penalized": its strangers are evicted first,
//!   and its newcomers that find no old enough stranger to replace are closed
//!   at once, without an alert. A client from that address that presents an
//!   authorized key is still served: the penalty only ever costs strangers.

use super::{Event, Shared, lock};
use crate::constants::{LEN_PREFIX, MAX_HANDSHAKE_FRAME};
use crate::io::conn::Conn;
use crate::proto::codec::check_frame_len;
use crate::proto::handshake::client_hello_key;
use crate::status::AlertCode;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::panic::catch_unwind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
/// How long a new connection is safe from eviction: time to send its hello
/// even on a loaded server. It also bounds how fast strangers can cycle
/// through the pool: at most `max_unauthenticated` per this period.
pub const MIN_STRANGER_AGE: Duration = Duration::from_millis(500);

/// Most source addresses whose failures are remembered; beyond this, a
/// bucket that has refilled is forgotten to make room.
const MAX_TRACKED_ADDRESSES: usize = 4096;
/// Tracked addresses looked at, oldest first, for one to forget: a failure
/// costs O(1) under the lock the accept loop needs, however many are tracked.
const FORGET_PROBES: usize = 4;

/// Failure budget of one address: `burst` failures at once, refilling at
/// `burst` per `window`.
#[derive(Debug, Clone, Copy)]
pub struct FailureBudget {
    /// Failures allowed in a burst (0 disables rate limiting).
    pub burst: u32,
    /// Time to refill the whole burst.
    pub window: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Stranger {
    id: u64,
    penalized: bool,
    /// Its hello named an authorized key (not yet proven).
    named: bool,
    since: Instant,
}

/// The outcome of admitting a new connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Admitted; if `evict` is set, that older stranger must be closed.
    Yes { evict: Option<u64> },
    /// Refused without a thread: the pool is full of strangers too young to
    /// evict. `quiet`: the address is penalized, close without an alert.
    No { quiet: bool },
}

/// The stranger pool and the per-address failure buckets.
#[derive(Debug)]
pub(crate) struct Gate {
    max_strangers: usize,
    budget: FailureBudget,
    strangers: VecDeque<Stranger>,
    buckets: HashMap<IpAddr, Bucket>,
    /// The keys of `buckets`, each once, oldest (or longest spared) first.
    tracked: VecDeque<IpAddr>,
    /// Buckets looked at, to prove that a failure costs O(1).
    #[cfg(test)]
    refills: usize,
}

impl Gate {
    pub(crate) fn new(max_strangers: usize, budget: FailureBudget) -> Self {
        Gate {
            max_strangers: max_strangers.max(1),
            budget,
            strangers: VecDeque::new(),
            buckets: HashMap::new(),
            tracked: VecDeque::new(),
            #[cfg(test)]
            refills: 0,
        }
    }

    fn refill(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Bucket> {
        let (burst, window) =
            (f64::from(self.budget.burst), self.budget.window.as_secs_f64().max(1e-3));
        #[cfg(test)]
        {
            self.refills += 1;
        }
        let b = self.buckets.get_mut(&ip)?;
        b.tokens =
            (b.tokens + now.duration_since(b.last).as_secs_f64() * burst / window).min(burst);
        b.last = now;
        Some(b)
    }

    /// Whether `ip` has used up its failure budget.
    pub(crate) fn penalized(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.budget.burst > 0 && self.refill(source(ip), now).is_some_and(|b| b.tokens < 1.0)
    }

    /// Admit connection `id` from `ip` into the stranger pool; `named`: its
    /// hello, already here, names an authorized key.
    pub(crate) fn admit(&mut self, id: u64, ip: IpAddr, named: bool, now: Instant) -> Admit {
        let penalized = self.penalized(ip, now);
        let mut evict = None;
        if self.strangers.len() >= self.max_strangers {
            // Oldest first; among those old enough, penalized ones first; a
            // named newcomer may also replace a young stranger that is not.
            let old = |s: &Stranger| now.duration_since(s.since) >= MIN_STRANGER_AGE;
            let victim = self
                .strangers
                .iter()
                .position(|s| s.penalized && old(s))
                .or_else(|| self.strangers.iter().position(old))
                .or_else(|| self.strangers.iter().position(|s| named && !s.named));
            match victim {
                Some(v) => evict = self.strangers.remove(v).map(|s| s.id),
                None => return Admit::No { quiet: penalized },
            }
        }
        self.strangers.push_back(Stranger { id, penalized, named, since: now });
        Admit::Yes { evict }
    }

    /// Connection `id`'s hello named an authorized key: it is still a stranger.
    pub(crate) fn named(&mut self, id: u64) {
        if let Some(s) = self.strangers.iter_mut().find(|s| s.id == id) {
            s.named = true;
        }
    }

    /// Connection `id` proved its authorized key: it is no longer a stranger.
    pub(crate) fn promote(&mut self, id: u64) {
        self.strangers.retain(|s| s.id != id);
    }

    /// Connection `id` ended; `failed` if its handshake failed.
    pub(crate) fn leave(&mut self, id: u64, ip: IpAddr, failed: bool, now: Instant) {
        self.strangers.retain(|s| s.id != id);
        if !failed || self.budget.burst == 0 {
            return;
        }
        let ip = source(ip);
        if !self.buckets.contains_key(&ip) {
            if self.buckets.len() >= MAX_TRACKED_ADDRESSES && !self.forget_refilled(now) {
                return; // everyone is misbehaving; the pool cap still holds
            }
            self.buckets.insert(ip, Bucket { tokens: f64::from(self.budget.burst), last: now });
            self.tracked.push_back(ip);
        }
        if let Some(b) = self.refill(ip, now) {
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
    }

    /// Forget one tracked address whose bucket has refilled, looking at no
    /// more than FORGET_PROBES of them (the others are spared until next time).
    fn forget_refilled(&mut self, now: Instant) -> bool {
        let burst = f64::from(self.budget.burst);
        for _ in 0..FORGET_PROBES {
            let Some(ip) = self.tracked.pop_front() else { return false };
            if self.refill(ip, now).is_some_and(|b| b.tokens >= burst) {
                self.buckets.remove(&ip);
                return true;
            }
            self.tracked.push_back(ip);
        }
        false
    }

    /// Whether a newcomer would have to evict someone (or be refused).
    pub(crate) fn is_full(&self) -> bool {
        self.strangers.len() >= self.max_strangers
    }
}

/// The source whose failures are counted: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 address's /64, the block one host usually holds.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Decide on a newcomer before it gets a thread: over the connection cap it
/// is told "busy"; otherwise the stranger pool admits it (perhaps evicting an
/// older stranger) or refuses it. `Some` holds its reserved slot and id.
pub(crate) fn admit(shared: &Shared, stream: TcpStream) -> Option<(TcpStream, SocketAddr, u64)> {
    let peer = stream.peer_addr().ok()?;
    // Reserve a slot; over the cap, answer "busy" at once and close.
    if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.config.max_connections {
        let busy = "too many connections; try again later";
        return refuse(shared, stream, peer, Some((AlertCode::Busy, busy)));
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    // Look at what the newcomer has already sent (a client sends its hello
    // right after connecting, so it is usually here by now): when the pool is
    // full, for a moment. An authorized key is preferred within the pool (it
    // never passes it: only a verified signature does); with the pool full,
    // an unknown one is refused without taking a place.
    let full = lock(&shared.gate).is_full();
    let wait = if full { HELLO_PEEK } else { Duration::ZERO };
    let admitted = match peek_hello(shared, &stream, wait) {
        Peeked::Unauthorized if full => {
            lock(&shared.gate).leave(id, peer.ip(), true, Instant::now());
            let why = "client key is not in authorized_keys";
            return refuse(shared, stream, peer, Some((AlertCode::Unauthorized, why)));
        }
        p => lock(&shared.gate).admit(id, peer.ip(), p == Peeked::Authorized, Instant::now()),
    };
    // A penalized address gets not even an alert; others learn to retry.
    if let Admit::No { quiet } = admitted {
        let busy = "too many connections being set up; try again";
        return refuse(shared, stream, peer, (!quiet).then_some((AlertCode::Busy, busy)));
    }
    if let Admit::Yes { evict: Some(victim) } = admitted {
        shared.close(victim);
    }
    Some((stream, peer, id))
}

/// Give back the reserved slot, report, and close, with the alert if any.
fn refuse<T>(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    alert: Option<(AlertCode, &str)>,
) -> Option<T> {
    shared.active.fetch_sub(1, Ordering::SeqCst);
    shared.emit(Event::Busy { peer });
    if let Some((code, message)) = alert {
        // Conn::new bounds the write to this.
        if let Ok(conn) = Conn::new(stream, Duration::from_millis(500)) {
            conn.refuse(code, message);
        }
    }
    None
}

/// What a newcomer has sent before it was given a thread.
#[derive(PartialEq)]
enum Peeked {
    /// A complete hello naming a key in `authorized_keys`.
    Authorized,
    /// A complete hello naming any other key.
    Unauthorized,
    /// Nothing usable yet (silence, a partial frame, garbage).
    Nothing,
}

/// How long the accept loop waits for a newcomer's hello when the stranger
/// pool is full (otherwise it only looks). Short: the accept loop serves everyone.
const HELLO_PEEK: Duration = Duration::from_millis(2);

/// Peek (without consuming) at a newcomer's first frame, for at most `wait`.
fn peek_hello(shared: &Shared, stream: &TcpStream, wait: Duration) -> Peeked {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; LEN_PREFIX + MAX_HANDSHAKE_FRAME];
    if stream.set_nonblocking(true).is_err() {
        return Peeked::Nothing;
    }
    let peeked = loop {
        match stream.peek(&mut buf) {
            Ok(n) if n > 0 => {
                if let Some(verdict) = hello_verdict(shared, &buf[..n]) {
                    break verdict;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => break Peeked::Nothing,
        }
        if Instant::now() >= deadline {
            break Peeked::Nothing;
        }
        // A partial frame, or nothing yet: give the rest a moment.
        std::thread::sleep(Duration::from_micros(100));
    };
    let _ = stream.set_nonblocking(false);
    peeked
}

/// What a peeked first frame says; `None` while it is incomplete.
fn hello_verdict(shared: &Shared, buf: &[u8]) -> Option<Peeked> {
    let (prefix, rest) = buf.split_first_chunk::<LEN_PREFIX>()?;
    let Ok(len) = check_frame_len(*prefix, MAX_HANDSHAKE_FRAME) else {
        return Some(Peeked::Nothing);
    };
    let hello = rest.get(..len)?;
    // A stranger's key is parsed on the accept thread: a panic in the parser
    // must not stop the server.
    Some(match catch_unwind(|| client_hello_key(hello)) {
        Ok(Ok(key)) if shared.authorized.contains(&key).unwrap_or(false) => Peeked::Authorized,
        Ok(Ok(_)) => Peeked::Unauthorized,
        _ => Peeked::Nothing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn gate(max: usize, burst: u32) -> Gate {
        Gate::new(max, FailureBudget { burst, window: Duration::from_secs(60) })
    }

    impl Gate {
        /// Connections currently in the stranger pool.
        fn strangers(&self) -> usize {
            self.strangers.len()
        }
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_stranger_once_it_had_time_to_speak() {
        let t0 = Instant::now();
        let later = t0 + MIN_STRANGER_AGE;
        let mut g = gate(2, 5);
        assert_eq!(g.admit(1, A, false, t0), Admit::Yes { evict: None });
        assert_eq!(g.admit(2, A, false, t0), Admit::Yes { evict: None });
        // Too young to evict: the newcomer is refused as busy.
        assert_eq!(g.admit(3, B, false, t0), Admit::No { quiet: false });
        assert_eq!(g.admit(3, B, false, later), Admit::Yes { evict: Some(1) });
        g.promote(2);
        assert_eq!(g.strangers(), 1);
        assert_eq!(g.admit(4, B, false, later), Admit::Yes { evict: None });
    }

    #[test]
    fn a_named_key_is_preferred_within_the_pool_but_never_passes_it() {
        let t0 = Instant::now();
        let mut g = gate(2, 5);
        assert_eq!(g.admit(1, A, false, t0), Admit::Yes { evict: None });
        assert_eq!(g.admit(2, A, true, t0), Admit::Yes { evict: None });
        // A hello naming an authorized key replaces a young silent stranger...
        assert_eq!(g.admit(3, B, true, t0), Admit::Yes { evict: Some(1) });
        // ...but not a young one that named a key too, and a silent one nothing young.
        assert_eq!(g.admit(4, B, true, t0), Admit::No { quiet: false });
        assert_eq!(g.admit(4, B, false, t0), Admit::No { quiet: false });
        // Naming a key is not proving it: still a stranger, evicted once old.
        g.named(2);
        assert_eq!(g.strangers(), 2);
        assert_eq!(g.admit(5, B, false, t0 + MIN_STRANGER_AGE), Admit::Yes { evict: Some(2) });
        g.promote(3);
        assert_eq!(g.strangers(), 1);
    }

    #[test]
    fn failures_beyond_the_budget_penalize_an_address_and_refill_over_time() {
        let now = Instant::now();
        let mut g = gate(2, 3);
        for id in 0..3 {
            g.admit(id, A, false, now);
            g.leave(id, A, true, now);
        }
        assert!(g.penalized(A, now));
        assert!(!g.penalized(B, now));
        // Penalized strangers are evicted first (once old enough); a penalized
        // newcomer finding none to replace is closed quietly.
        let later = now + MIN_STRANGER_AGE;
        assert_eq!(g.admit(10, B, false, now), Admit::Yes { evict: None });
        assert_eq!(g.admit(11, A, false, now), Admit::Yes { evict: None });
        assert_eq!(g.admit(12, B, false, later), Admit::Yes { evict: Some(11) });
        assert_eq!(g.admit(13, A, false, later), Admit::Yes { evict: Some(10) });
        assert_eq!(g.admit(14, A, false, later), Admit::No { quiet: true });
        // A third of the window refills one token.
        assert!(!g.penalized(A, now + Duration::from_secs(21)));
    }

    #[test]
    fn ipv6_sources_share_one_budget_per_64_and_mapped_ipv4_is_ipv4() {
        let now = Instant::now();
        let mut g = gate(2, 3);
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        for id in 0..3 {
            g.leave(id, v6(&format!("2001:db8::{id}")), true, now);
        }
        assert!(g.penalized(v6("2001:db8::ffff:1"), now), "same /64");
        assert!(!g.penalized(v6("2001:db8:0:1::1"), now), "another /64");
        for id in 0..3 {
            g.leave(id, A, true, now);
        }
        assert!(g.penalized(v6("::ffff:10.0.0.1"), now));
    }

    #[test]
    fn a_full_table_forgets_a_refilled_address_without_scanning_them_all() {
        let t0 = Instant::now();
        let mut g = gate(2, 2);
        let addr = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(0xc0a8_0000 + n));
        for n in 0..MAX_TRACKED_ADDRESSES as u32 {
            g.leave(0, addr(n), true, t0);
        }
        // A window later every bucket has refilled: a new address is counted,
        // at the cost of a few buckets looked at, not all 4,096.
        let later = t0 + Duration::from_secs(60);
        let before = g.refills;
        g.leave(0, B, true, later);
        assert!(g.refills - before <= 8, "{} buckets looked at", g.refills - before);
        g.leave(0, B, true, later);
        assert!(g.penalized(B, later));
        assert!(g.buckets.len() <= MAX_TRACKED_ADDRESSES);
        // While none has refilled, failures of new addresses go uncounted.
        let mut g = gate(2, 2);
        for n in 0..MAX_TRACKED_ADDRESSES as u32 {
            g.leave(0, addr(n), true, t0);
        }
        let before = g.refills;
        g.leave(0, B, true, t0);
        g.leave(0, B, true, t0);
        assert!(g.refills - before <= 16, "{} buckets looked at", g.refills - before);
        assert!(!g.penalized(B, t0));
    }

    #[test]
    fn a_zero_budget_disables_rate_limiting() {
        let now = Instant::now();
        let mut g = gate(1, 0);
        for id in 0..100 {
            g.admit(id, A, false, now);
            g.leave(id, A, true, now);
        }
        assert!(!g.penalized(A, now));
    }
}
