//! `tern-loadgen`: registers devices against a running relay and measures
//! accepted messages per second and send→deliver latency.
//!
//! Modes: `direct` (pairs of devices), `group` (one sender per group,
//! sender-key style common ciphertext), `drain` (reconnect with queued
//! messages), `idle` (hold many connections, for RSS measurements) and
//! `verify` (keep sending through relay crashes, then check that every
//! acknowledged message was stored exactly once).

mod cpu;
mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use quinn::{Connection, Endpoint};
use tern_protocol::ClientMessageId;
use tern_protocol::wire::{
    ChatKind, Cursor, DeviceCiphertext, Send, Sync, event, request, response,
};
use tern_testkit::raw::{Events, Hello, RawClient, answer, create_chat, exchange};
use tern_testkit::{Account, RelayAddress, random};
use tern_transport::Pipeline;
use tokio::sync::Semaphore;

/// Load generator for tern-relay.
#[derive(Parser, Clone)]
#[command(version)]
struct Args {
    /// Relay UDP address; several, comma-separated, for the nodes of a
    /// cluster (one certificate): device `i` uses node `i mod n`, and in
    /// `verify` mode moves to the next node when its node is unreachable.
    #[arg(long, default_value = "127.0.0.1:4433", value_delimiter = ',')]
    relay: Vec<SocketAddr>,
    /// SHA-256 fingerprint the relay printed (all nodes share it).
    #[arg(long)]
    fingerprint: String,
    /// What to measure.
    #[arg(long, value_enum, default_value = "direct")]
    mode: Mode,
    /// Devices to register and connect.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Members per group (group mode).
    #[arg(long, default_value_t = 100)]
    group_size: usize,
    /// Target messages per second over all senders; 0 = as fast as acks allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Ciphertext bytes per message (at least 8).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Messages queued for the offline device (drain mode).
    #[arg(long, default_value_t = 10_000)]
    queued: usize,
    /// Client UDP endpoints the connections are spread over.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Runtime worker threads (0: one per core). On a machine shared with
    /// the relay, fewer threads leave it more CPU.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// How senders put their requests on the wire.
    #[arg(long, value_enum, default_value = "pipelined")]
    streams: Streams,
    /// Seconds at the start whose latencies are left out of the
    /// percentiles (streams opening, caches and congestion windows warming
    /// up); throughput counts the whole run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Process id of the relay when it runs on this machine: runs then
    /// report the CPU time per accepted message of each relay thread and
    /// of the load generator (from Linux's /proc).
    #[arg(long)]
    relay_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Streams {
    /// All of a sender's requests on one stream (if the relay supports it).
    Pipelined,
    /// A new stream per request.
    PerRequest,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Direct,
    Group,
    Drain,
    Idle,
    Verify,
}

struct Clock(Instant);

impl Clock {
    fn micros(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// The relay nodes of `--relay`, pinned to `--fingerprint`.
fn relays(args: &Args) -> anyhow::Result<Vec<RelayAddress>> {
    anyhow::ensure!(!args.relay.is_empty(), "--relay names no address");
    args.relay
        .iter()
        .map(|addr| Ok(tern_testkit::relay::pinned(*addr, &args.fingerprint)?))
        .collect()
}

fn endpoints(args: &Args, relay: &RelayAddress) -> anyhow::Result<Vec<Endpoint>> {
    let config = relay.trust.client_config()?;
    (0..args.endpoints.max(1))
        .map(|_| {
            let mut e = tern_transport::client_endpoint("0.0.0.0:0".parse()?)?;
            e.set_default_client_config(config.clone());
            Ok(e)
        })
        .collect()
}

/// Connects from `endpoint` and registers a fresh account named `name`
/// with one device.
async fn register(
    endpoint: &Endpoint,
    relay: &RelayAddress,
    name: &str,
) -> anyhow::Result<RawClient> {
    let account = Account::new(name, 1);
    let hello = Hello::connect(endpoint, relay).await?;
    Ok(hello
        .register_account(&account, account.public_key(), "")
        .await?)
}

async fn register_many(args: &Args, n: usize) -> anyhow::Result<Vec<RawClient>> {
    let relays = Arc::new(relays(args)?);
    let eps = endpoints(args, &relays[0])?;
    let run = random::<4>();
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let ep = eps[i % eps.len()].clone();
        let name = format!("lg-{}-{i}", hex::encode(run));
        let relays = relays.clone();
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            register(&ep, &relays[i % relays.len()], &name).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Creates a chat of `kind` that `owner` shares with `members`.
async fn open_chat(
    owner: &RawClient,
    members: &[[u8; 16]],
    kind: ChatKind,
) -> anyhow::Result<[u8; 16]> {
    let chat = random();
    exchange(&owner.conn, create_chat(chat, kind, members)).await?;
    Ok(chat)
}

fn payload(clock: &Clock, len: usize) -> bytes::Bytes {
    let mut p = vec![0u8; len.max(8)];
    p[..8].copy_from_slice(&clock.micros().to_be_bytes());
    p.into()
}

/// A time-ordered client message id, as clients make them.
fn message_id() -> anyhow::Result<ClientMessageId> {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    Ok(ClientMessageId::time_ordered(
        u64::try_from(unix_ms)?,
        random(),
    ))
}

fn stamp(ct: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(ct.get(..8)?.try_into().ok()?))
}

type Shard = Arc<std::sync::Mutex<Vec<u32>>>;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Latency samples (µs), one shard per task so recording never contends.
#[derive(Default)]
struct Samples(std::sync::Mutex<Vec<Shard>>);

impl Samples {
    fn shard(&self) -> Shard {
        let shard = Shard::default();
        lock(&self.0).push(shard.clone());
        shard
    }

    fn report(&self, what: &str) {
        let mut v: Vec<u32> = lock(&self.0)
            .iter()
            .flat_map(|s| std::mem::take(&mut *lock(s)))
            .collect();
        v.sort_unstable();
        let q = |p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "{what}: n={} p50={:.3}ms p99={:.3}ms p999={:.3}ms max={:.3}ms",
            v.len(),
            f64::from(q(0.5)) / 1000.0,
            f64::from(q(0.99)) / 1000.0,
            f64::from(q(0.999)) / 1000.0,
            f64::from(v.last().copied().unwrap_or(0)) / 1000.0
        );
    }
}

/// What a run counts: entries stamped from `start` (µs on the run's clock);
/// latencies only of those stamped from `sampled_from`, after the warm-up.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    sampled_from: u64,
}

impl Window {
    /// Records the latency of an entry stamped `sent` if it is past the
    /// warm-up.
    fn sample(&self, shard: &Shard, clock: &Clock, sent: u64) {
        if sent >= self.sampled_from {
            let latency = clock.micros().saturating_sub(sent);
            lock(shard).push(u32::try_from(latency).unwrap_or(u32::MAX));
        }
    }
}

/// Spawns a reader for a device's delivery stream that counts the entries
/// of the run's `window` and samples their latency.
fn spawn_receiver(
    dev: &RawClient,
    clock: Arc<Clock>,
    samples: Arc<Samples>,
    delivered: Arc<AtomicU64>,
    window: Window,
) {
    let conn = dev.conn.clone();
    let shard = samples.shard();
    tokio::spawn(async move {
        let result = read_events(conn, |kind| {
            if let event::Kind::Delivery(d) = kind {
                let ct = if d.ciphertext.is_empty() {
                    &d.common_ciphertext
                } else {
                    &d.ciphertext
                };
                if let Some(sent) = stamp(ct).filter(|s| *s >= window.start) {
                    window.sample(&shard, &clock, sent);
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "delivery stream ended");
        }
    });
}

/// Reads events from `conn`'s delivery stream, calling `on_event` for each.
async fn read_events(
    conn: Connection,
    mut on_event: impl FnMut(event::Kind),
) -> anyhow::Result<()> {
    let mut events = Events::accept(&conn).await?;
    while let Some(kind) = events.next().await? {
        on_event(kind);
    }
    Ok(())
}

/// How a sender puts its requests on the wire.
enum Requests {
    /// A new stream per request.
    PerStream(Connection),
    /// All requests on one pipelined stream.
    Pipelined(Pipeline),
}

impl Requests {
    /// Pipelined if `pipelined` and the relay supports it.
    async fn for_device(device: &RawClient, pipelined: bool) -> anyhow::Result<Self> {
        Ok(if pipelined && device.max_pipelined > 0 {
            Self::Pipelined(Pipeline::open(&device.conn, device.max_pipelined).await?)
        } else {
            Self::PerStream(device.conn.clone())
        })
    }

    /// Sends one request and waits for its response.
    async fn request(&self, kind: request::Kind) -> anyhow::Result<response::Kind> {
        Ok(match self {
            Self::PerStream(conn) => exchange(conn, kind).await?,
            Self::Pipelined(p) => answer(p.request(kind).await?)?,
        })
    }
}

struct Sender {
    requests: Requests,
    chat: [u8; 16],
    to: Option<[u8; 16]>,
}

impl Sender {
    async fn new(
        args: &Args,
        device: &RawClient,
        chat: [u8; 16],
        to: Option<[u8; 16]>,
    ) -> anyhow::Result<Self> {
        let pipelined = args.streams == Streams::Pipelined;
        Ok(Self {
            requests: Requests::for_device(device, pipelined).await?,
            chat,
            to,
        })
    }
}

async fn run_senders(
    args: &Args,
    senders: Vec<Sender>,
    clock: Arc<Clock>,
    window: Window,
) -> anyhow::Result<(u64, Arc<Samples>)> {
    let acked = Arc::new(AtomicU64::new(0));
    let ack_lat = Arc::new(Samples::default());
    let stop = Instant::now() + Duration::from_secs(args.duration);
    let per_sender_interval =
        (args.rate > 0).then(|| Duration::from_secs_f64(senders.len() as f64 / args.rate as f64));
    let mut tasks = Vec::new();
    let count = senders.len().max(1);
    for (i, s) in senders.into_iter().enumerate() {
        // Senders at a fixed rate start evenly spread over one period, as
        // independent devices would, instead of all ticking at once.
        let start = per_sender_interval.map(|period| {
            let offset = period.mul_f64(i as f64 / count as f64);
            (tokio::time::Instant::now() + offset, period)
        });
        let s = Arc::new(s);
        let permits = args.inflight.max(1);
        let inflight = Arc::new(Semaphore::new(permits));
        let (acked, ack_lat, clock) = (acked.clone(), ack_lat.shard(), clock.clone());
        let len = args.payload;
        tasks.push(tokio::spawn(async move {
            let mut ticker = start.map(|(at, period)| tokio::time::interval_at(at, period));
            while Instant::now() < stop {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let Ok(permit) = inflight.clone().acquire_owned().await else {
                    break;
                };
                let (s, acked, ack_lat, clock) =
                    (s.clone(), acked.clone(), ack_lat.clone(), clock.clone());
                tokio::spawn(async move {
                    let body = payload(&clock, len);
                    let sent = stamp(&body).unwrap_or(0);
                    let device_ciphertexts =
                        s.to.map(|to| DeviceCiphertext {
                            user_id: to.to_vec().into(),
                            device_id: 1,
                            ciphertext: body.clone(),
                        })
                        .into_iter()
                        .collect();
                    let common = if s.to.is_some() {
                        bytes::Bytes::new()
                    } else {
                        body
                    };
                    let req = request::Kind::Send(Send {
                        chat_id: s.chat.to_vec().into(),
                        client_message_id: message_id().map(|id| id.to_wire()).unwrap_or_default(),
                        device_ciphertexts,
                        common_ciphertext: common,
                    });
                    if s.requests.request(req).await.is_ok() {
                        acked.fetch_add(1, Ordering::Relaxed);
                        window.sample(&ack_lat, &clock, sent);
                    }
                    drop(permit);
                });
            }
            // Wait for this sender's sends in flight.
            let _ = inflight
                .acquire_many(u32::try_from(permits).unwrap_or(1))
                .await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok((acked.load(Ordering::Relaxed), ack_lat))
}

/// What one measured run produced.
struct Run {
    acked: u64,
    secs: f64,
    delivered: u64,
    ack_latency: Arc<Samples>,
    deliver_latency: Arc<Samples>,
    cpu: Option<cpu::RunCpu>,
}

impl Run {
    /// Prints what the run cost in CPU (if measured) and its latencies.
    fn report_details(&self, args: &Args) {
        if let Some(cpu) = &self.cpu {
            cpu.report(self.acked);
        }
        println!(
            "latencies of messages sent after a {:.1}s warm-up:",
            args.warmup
        );
        self.ack_latency.report("send->ack");
        self.deliver_latency.report("send->deliver");
    }
}

/// Reads every device's deliveries while `senders` run, then lets the last
/// deliveries arrive.
async fn measure(args: &Args, devices: &[RawClient], senders: Vec<Sender>) -> anyhow::Result<Run> {
    let clock = Arc::new(Clock(Instant::now()));
    let deliver_latency = Arc::new(Samples::default());
    let delivered = Arc::new(AtomicU64::new(0));
    let start = clock.micros();
    let window = Window {
        start,
        sampled_from: start + (args.warmup.max(0.0) * 1e6) as u64,
    };
    for d in devices {
        spawn_receiver(
            d,
            clock.clone(),
            deliver_latency.clone(),
            delivered.clone(),
            window,
        );
    }
    let meter = args.relay_pid.map(cpu::Meter::start);
    let t0 = Instant::now();
    let (acked, ack_latency) = run_senders(args, senders, clock, window).await?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = meter.map(|m| m.finish());
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Run {
        acked,
        secs,
        delivered: delivered.load(Ordering::Relaxed),
        ack_latency,
        deliver_latency,
        cpu,
    })
}

async fn direct(args: &Args) -> anyhow::Result<()> {
    let devices = register_many(args, args.devices - args.devices % 2).await?;
    println!("registered {} devices", devices.len());
    let mut senders = Vec::new();
    for pair in devices.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let chat = open_chat(a, &[b.user_id], ChatKind::Direct).await?;
        senders.push(Sender::new(args, a, chat, Some(b.user_id)).await?);
        senders.push(Sender::new(args, b, chat, Some(a.user_id)).await?);
    }
    let run = measure(args, &devices, senders).await?;
    println!(
        "direct: devices={} rate_target={} accepted={} in {:.2}s = {:.0} msgs/s; delivered={}",
        devices.len(),
        args.rate,
        run.acked,
        run.secs,
        run.acked as f64 / run.secs,
        run.delivered
    );
    run.report_details(args);
    Ok(())
}

async fn group(args: &Args) -> anyhow::Result<()> {
    let g = args.group_size.max(2);
    let devices = register_many(args, args.devices - args.devices % g).await?;
    println!("registered {} devices", devices.len());
    let mut senders = Vec::new();
    for members in devices.chunks(g) {
        let others: Vec<[u8; 16]> = members[1..].iter().map(|d| d.user_id).collect();
        let chat = open_chat(&members[0], &others, ChatKind::Group).await?;
        senders.push(Sender::new(args, &members[0], chat, None).await?);
    }
    let run = measure(args, &devices, senders).await?;
    let d = run.delivered;
    println!(
        "group: size={g} groups={} accepted={} in {:.2}s = {:.0} msgs/s; deliveries={} = {:.0} deliveries/s",
        devices.len() / g,
        run.acked,
        run.secs,
        run.acked as f64 / run.secs,
        d,
        d as f64 / run.secs
    );
    run.report_details(args);
    Ok(())
}

async fn drain(args: &Args) -> anyhow::Result<()> {
    let devices = register_many(args, 2).await?;
    let (a, b) = (&devices[0], &devices[1]);
    let chat = open_chat(a, &[b.user_id], ChatKind::Direct).await?;
    let clock = Clock(Instant::now());
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for _ in 0..args.queued {
        let permit = limit.clone().acquire_owned().await?;
        let conn = a.conn.clone();
        let req = request::Kind::Send(Send {
            chat_id: chat.to_vec().into(),
            client_message_id: message_id()?.to_wire(),
            device_ciphertexts: vec![DeviceCiphertext {
                user_id: b.user_id.to_vec().into(),
                device_id: 1,
                ciphertext: payload(&clock, args.payload),
            }],
            common_ciphertext: bytes::Bytes::new(),
        });
        tasks.push(tokio::spawn(async move {
            let r = exchange(&conn, req).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("queued {} messages for the offline reader", args.queued);
    let t0 = Instant::now();
    let mut after = 0;
    let mut got = 0;
    loop {
        let req = request::Kind::Sync(Sync {
            after: vec![Cursor {
                chat_id: chat.to_vec().into(),
                seq: after,
            }],
            limit: 0,
        });
        let response::Kind::SyncBatch(page) = exchange(&b.conn, req).await? else {
            anyhow::bail!("expected a sync batch");
        };
        got += page.entries.len();
        after = page.entries.last().map_or(after, |e| e.seq);
        if !page.more {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "drain: {got} entries synced in {:.3}s = {:.0} entries/s",
        secs,
        got as f64 / secs
    );
    Ok(())
}

async fn idle(args: &Args) -> anyhow::Result<()> {
    let devices = register_many(args, args.devices).await?;
    println!(
        "connected {} idle devices; holding for {}s",
        devices.len(),
        args.duration
    );
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build().context("tokio runtime")?;
    rt.block_on(async {
        match args.mode {
            Mode::Direct => direct(&args).await,
            Mode::Group => group(&args).await,
            Mode::Drain => drain(&args).await,
            Mode::Idle => idle(&args).await,
            Mode::Verify => verify::verify(&args).await,
        }
    })
}
