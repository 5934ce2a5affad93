//! A lossy link: an in-process UDP proxy on 127.0.0.1 between clients and a
//! relay that drops, duplicates, delays and reorders datagrams in both
//! directions.
//!
//! Clients connect to [`LossyLink::addr`] instead of the relay. Every client
//! source address gets an upstream socket of its own, so the relay sees
//! distinct peers (and answers each one through its socket). Every datagram,
//! either way, is independently
//!
//! 1. dropped with probability [`LinkProfile::loss`], else
//! 2. sent twice with probability [`LinkProfile::duplicate`] (each copy with
//!    its own delay), each copy
//! 3. delayed by a uniformly drawn [`LinkProfile::jitter`], without leaving
//!    before the datagram ahead of it in its flow (one client's datagrams in
//!    one direction), as in a queue whose delay varies — so jitter alone
//!    reorders nothing, and
//! 4. with probability [`LinkProfile::reorder`] held back one more maximum
//!    jitter, outside the queue, so that datagrams sent after it overtake
//!    it.
//!
//! (Jitter drawn for each datagram independently *and* applied
//! independently, as netem does by default, would reorder most datagrams
//! sent less than the jitter's width apart; QUIC then takes the gaps for
//! losses and shrinks its congestion window far more than the loss rate
//! alone would.) [`LinkStats::out_of_order`] counts the reordering the far
//! side actually saw.
//!
//! The draws come from a small generator seeded at start
//! ([`LossyLink::seed`]), so a run can name its seed; the timing of the
//! datagrams still varies from run to run. Dropping the [`LossyLink`] stops
//! its tasks.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The largest datagram the proxy forwards.
const MAX_DATAGRAM: usize = 65_535;

/// What the link does to each datagram.
///
/// Probabilities are drawn as `uniform [0, 1) < p`: 0 never, 1 always (and
/// values outside `[0, 1]` act as the nearest of the two).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkProfile {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram that was not dropped is sent twice.
    pub duplicate: f64,
    /// Probability that a copy is held back one more maximum jitter
    /// (`jitter.1`) on top of its jitter, outside its flow's order, so that
    /// later datagrams overtake it.
    pub reorder: f64,
    /// The range (inclusive; the bounds in either order) a copy's delay is
    /// drawn from, uniformly. A copy not held back leaves no earlier than
    /// the one ahead of it in its flow.
    pub jitter: (Duration, Duration),
}

impl LinkProfile {
    /// A bad mobile link: 5 % loss, 1 % duplication, 5 % reordering and
    /// 20–80 ms of jitter, each way.
    pub const fn lossy() -> Self {
        Self {
            loss: 0.05,
            duplicate: 0.01,
            reorder: 0.05,
            jitter: (Duration::from_millis(20), Duration::from_millis(80)),
        }
    }

    /// A perfect link: every datagram forwarded once, at once.
    pub const fn clean() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            jitter: (Duration::ZERO, Duration::ZERO),
        }
    }

    /// The jitter range as (shortest, longest).
    fn jitter_range(&self) -> (Duration, Duration) {
        let (a, b) = self.jitter;
        (a.min(b), a.max(b))
    }

    /// The delays of the copies of one datagram (none when it is dropped),
    /// each with whether it was held back to be overtaken.
    fn plan(&self, rng: &mut SplitMix64) -> Vec<(Duration, bool)> {
        if rng.chance(self.loss) {
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate) { 2 } else { 1 };
        let (low, high) = self.jitter_range();
        (0..copies)
            .map(|_| {
                let mut delay = low + (high - low).mul_f64(rng.unit());
                let held = rng.chance(self.reorder);
                if held {
                    delay += high;
                }
                (delay, held)
            })
            .collect()
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (low, high) = self.jitter_range();
        write!(
            f,
            "loss {} %, duplication {} %, reordering {} % (held +{} ms), jitter {}–{} ms, each way",
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.reorder * 100.0,
            high.as_millis(),
            low.as_millis(),
            high.as_millis(),
        )
    }
}

/// What a [`LossyLink`] did so far, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams the proxy received (from clients and from the relay).
    pub received: u64,
    /// Datagrams it sent on (duplicates included).
    pub forwarded: u64,
    /// Datagrams it dropped on purpose.
    pub dropped: u64,
    /// Datagrams it sent twice.
    pub duplicated: u64,
    /// Copies it held back to be overtaken.
    pub reordered: u64,
    /// Copies that left after a datagram that arrived later in the same
    /// flow (the reordering the receiving side saw).
    pub out_of_order: u64,
    /// Client source addresses it has seen (one upstream socket each).
    pub peers: u64,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, forwarded {}, dropped {}, duplicated {}, held back {}, \
             out of order {}, peers {}",
            self.received,
            self.forwarded,
            self.dropped,
            self.duplicated,
            self.reordered,
            self.out_of_order,
            self.peers
        )
    }
}

/// The counters behind [`LinkStats`].
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    out_of_order: AtomicU64,
    peers: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LinkStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkStats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            dropped: get(&self.dropped),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
            out_of_order: get(&self.out_of_order),
            peers: get(&self.peers),
        }
    }
}

/// A running lossy UDP proxy in front of one upstream address (see the
/// [module docs](self)). Dropping it stops the proxy.
pub struct LossyLink {
    addr: SocketAddr,
    profile: LinkProfile,
    seed: u64,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl LossyLink {
    /// Starts a proxy on an ephemeral port of 127.0.0.1 that forwards to
    /// `upstream` with `profile`, its draws seeded from the OS.
    ///
    /// # Panics
    /// As [`start_seeded`](Self::start_seeded).
    pub fn start(upstream: SocketAddr, profile: LinkProfile) -> Self {
        Self::start_seeded(upstream, profile, u64::from_le_bytes(crate::random()))
    }

    /// [`start`](Self::start) with the generator seeded with `seed`.
    ///
    /// # Panics
    /// When called outside a tokio runtime, or when no UDP socket can be
    /// bound on 127.0.0.1.
    #[allow(clippy::expect_used)]
    pub fn start_seeded(upstream: SocketAddr, profile: LinkProfile, seed: u64) -> Self {
        let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).expect("binding the proxy socket");
        socket
            .set_nonblocking(true)
            .expect("making the proxy socket non-blocking");
        let front = UdpSocket::from_std(socket).expect("a tokio runtime for the proxy");
        let addr = front.local_addr().expect("the proxy socket's address");
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(
            Arc::new(front),
            upstream,
            profile,
            SplitMix64(seed),
            counters.clone(),
        ));
        Self {
            addr,
            profile,
            seed,
            counters,
            task,
        }
    }

    /// The address clients send to in place of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The profile it applies.
    pub fn profile(&self) -> LinkProfile {
        self.profile
    }

    /// The seed of its draws (to name in a test's output).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What it did so far.
    pub fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        // The serving task owns every other task (a `JoinSet`): aborting it
        // drops the set, which aborts them.
        self.task.abort();
    }
}

/// A flow: one client's datagrams in one direction (`true`: towards the
/// upstream).
type Flow = (SocketAddr, bool);

/// A datagram to pass through the link: sent from `via` to `to`.
#[derive(Clone)]
struct Datagram {
    flow: Flow,
    via: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Bytes,
}

/// A copy waiting for its time; ordered so that a [`BinaryHeap`] pops the
/// earliest first (then the first scheduled).
struct Due {
    at: Instant,
    order: u64,
    /// The datagram's place in the order the proxy received them.
    arrival: u64,
    datagram: Datagram,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// Receives from clients, opens an upstream socket per client, and hands
/// every datagram to the scheduler.
async fn serve(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    profile: LinkProfile,
    rng: SplitMix64,
    counters: Arc<Counters>,
) {
    let (queue, queued) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    tasks.spawn(schedule(queued, profile, rng, counters.clone()));
    let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // Errors on an unconnected UDP socket are about single datagrams.
        let Ok((len, from)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let via = match peers.get(&from) {
            Some(socket) => socket.clone(),
            None => {
                let Ok(socket) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                    continue;
                };
                let socket = Arc::new(socket);
                Counters::add(&counters.peers, 1);
                tasks.spawn(answer(
                    socket.clone(),
                    upstream,
                    front.clone(),
                    from,
                    queue.clone(),
                ));
                peers.insert(from, socket.clone());
                socket
            }
        };
        let datagram = Datagram {
            flow: (from, true),
            via,
            to: upstream,
            bytes: Bytes::copy_from_slice(&buf[..len]),
        };
        if queue.send(datagram).is_err() {
            return;
        }
    }
}

/// Receives the upstream's answers to one client and hands them to the
/// scheduler, to be sent to the client from the proxy's address.
async fn answer(
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    queue: mpsc::UnboundedSender<Datagram>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if from != upstream {
            continue;
        }
        let datagram = Datagram {
            flow: (client, false),
            via: front.clone(),
            to: client,
            bytes: Bytes::copy_from_slice(&buf[..len]),
        };
        if queue.send(datagram).is_err() {
            return;
        }
    }
}

/// Applies the profile to every datagram and sends each copy when due.
async fn schedule(
    mut queued: mpsc::UnboundedReceiver<Datagram>,
    profile: LinkProfile,
    mut rng: SplitMix64,
    counters: Arc<Counters>,
) {
    let mut waiting = BinaryHeap::new();
    let mut order = 0u64;
    let mut arrivals = 0u64;
    // Per flow: when its last queued (not held back) copy leaves, and the
    // latest arrival sent so far.
    let mut queue_ends: HashMap<Flow, Instant> = HashMap::new();
    let mut latest_sent: HashMap<Flow, u64> = HashMap::new();
    loop {
        let next = waiting.peek().map(|due: &Due| due.at);
        let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            datagram = queued.recv() => {
                let Some(datagram) = datagram else { return };
                Counters::add(&counters.received, 1);
                arrivals += 1;
                let copies = profile.plan(&mut rng);
                match copies.len() {
                    0 => Counters::add(&counters.dropped, 1),
                    1 => {}
                    _ => Counters::add(&counters.duplicated, 1),
                }
                let now = Instant::now();
                for (delay, held) in copies {
                    let mut at = now + delay;
                    if held {
                        Counters::add(&counters.reordered, 1);
                    } else {
                        let end = queue_ends.entry(datagram.flow).or_insert(now);
                        at = at.max(*end);
                        *end = at;
                    }
                    order += 1;
                    waiting.push(Due { at, order, arrival: arrivals, datagram: datagram.clone() });
                }
            }
            () = tokio::time::sleep_until(wake), if next.is_some() => {
                let now = Instant::now();
                while waiting.peek().is_some_and(|due| due.at <= now) {
                    let Some(due) = waiting.pop() else { break };
                    let Datagram { flow, via, to, bytes } = due.datagram;
                    let latest = latest_sent.entry(flow).or_default();
                    if due.arrival < *latest {
                        Counters::add(&counters.out_of_order, 1);
                    }
                    *latest = (*latest).max(due.arrival);
                    if via.send_to(&bytes, to).await.is_ok() {
                        Counters::add(&counters.forwarded, 1);
                    }
                }
            }
        }
    }
}

/// SplitMix64: a small, fast generator, plenty for drawing link faults.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_draws_follow_the_profile() {
        let profile = LinkProfile::lossy();
        let mut rng = SplitMix64(7);
        let (mut dropped, mut duplicated, mut held, mut copies) = (0, 0, 0, 0);
        let rounds = 100_000;
        for _ in 0..rounds {
            let plan = profile.plan(&mut rng);
            match plan.len() {
                0 => dropped += 1,
                2 => duplicated += 1,
                _ => {}
            }
            for (delay, was_held) in plan {
                copies += 1;
                if was_held {
                    held += 1;
                    assert!(delay >= Duration::from_millis(100));
                    assert!(delay <= Duration::from_millis(160));
                } else {
                    assert!(delay >= Duration::from_millis(20));
                    assert!(delay <= Duration::from_millis(80));
                }
            }
        }
        let near = |count: i32, total: i32, p: f64| {
            let rate = f64::from(count) / f64::from(total);
            (rate - p).abs() < p * 0.15
        };
        assert!(near(dropped, rounds, 0.05), "{dropped}");
        assert!(near(duplicated, rounds - dropped, 0.01), "{duplicated}");
        assert!(near(held, copies, 0.05), "{held}");
    }

    #[test]
    fn a_clean_profile_forwards_everything_at_once() {
        let mut rng = SplitMix64(1);
        for _ in 0..1000 {
            assert_eq!(
                LinkProfile::clean().plan(&mut rng),
                [(Duration::ZERO, false)]
            );
        }
    }

    /// An upstream that answers every datagram with its sender's address.
    async fn echo_server() -> SocketAddr {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let mut reply = from.to_string().into_bytes();
                reply.extend_from_slice(&buf[..len]);
                socket.send_to(&reply, from).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_client_is_a_distinct_peer_upstream() {
        let link = LossyLink::start(echo_server().await, LinkProfile::clean());
        let a = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let b = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let mut seen = Vec::new();
        for socket in [&a, &b, &a] {
            socket.send_to(b"|ping", link.addr()).await.unwrap();
            let mut buf = [0u8; 2048];
            let (len, from) = crate::guard(socket.recv_from(&mut buf)).await.unwrap();
            assert_eq!(from, link.addr());
            let reply = String::from_utf8(buf[..len].to_vec()).unwrap();
            let (peer, body) = reply.split_once('|').unwrap();
            assert_eq!(body, "ping");
            seen.push(peer.to_owned());
        }
        assert_ne!(
            seen[0], seen[1],
            "distinct clients, distinct upstream peers"
        );
        assert_eq!(seen[0], seen[2], "one upstream peer per client");
        let stats = link.stats();
        assert_eq!((stats.received, stats.forwarded), (6, 6));
        assert_eq!((stats.dropped, stats.peers), (0, 2));
    }

    /// Sends 200 numbered datagrams through a link with `profile`; returns
    /// the numbers in the order their echoes came back, and the stats.
    async fn numbered_round_trip(profile: LinkProfile) -> (Vec<u8>, LinkStats) {
        let link = LossyLink::start_seeded(echo_server().await, profile, 11);
        let client = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        for n in 0..200u8 {
            client.send_to(&[b'|', n], link.addr()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 200 {
            let (len, _) = crate::guard(client.recv_from(&mut buf)).await.unwrap();
            got.push(buf[len - 1]);
        }
        (got, link.stats())
    }

    #[tokio::test]
    async fn jitter_alone_keeps_the_order_and_held_datagrams_are_overtaken() {
        let jittery = LinkProfile {
            jitter: (Duration::ZERO, Duration::from_millis(30)),
            ..LinkProfile::clean()
        };
        let (got, stats) = numbered_round_trip(jittery).await;
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert_eq!(stats.out_of_order, 0);

        let reordering = LinkProfile {
            reorder: 0.2,
            ..jittery
        };
        let (got, stats) = numbered_round_trip(reordering).await;
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
        assert_ne!(got, sorted);
        assert!(stats.reordered > 0 && stats.out_of_order > 0, "{stats}");
        assert!(stats.out_of_order <= stats.reordered, "{stats}");
    }

    #[tokio::test]
    async fn a_dead_link_drops_everything() {
        let profile = LinkProfile {
            loss: 1.0,
            ..LinkProfile::clean()
        };
        let link = LossyLink::start_seeded(echo_server().await, profile, 3);
        let client = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        for _ in 0..20 {
            client.send_to(b"|x", link.addr()).await.unwrap();
        }
        let mut buf = [0u8; 64];
        let answer =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await;
        assert!(answer.is_err(), "nothing gets through");
        let stats = link.stats();
        assert_eq!(
            (stats.received, stats.dropped, stats.forwarded),
            (20, 20, 0)
        );
    }
}
