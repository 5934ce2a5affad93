//! `--mode verify`: keeps sending through relay crashes, then proves that
//! every acknowledged message reached its recipient exactly once.
//!
//! Devices come in pairs sharing a direct chat; each sends one message at a
//! time to its peer. A send whose answer is lost (the relay died, the
//! connection broke, the request timed out) is resent with the same client
//! message id on a new connection until the relay answers, as real clients
//! do; only an answered send counts as acknowledged, with the seq the relay
//! gave it. When the run ends, every device reads its chat's whole log
//! with `Sync` and checks it against what its peer was told: each
//! acknowledged message exactly once, at its acknowledged seq, and no
//! message stored twice. Recipients never acknowledge, so nothing is
//! collected before the check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn::Endpoint;
use tern_protocol::wire::{
    ChatKind, Cursor, DeviceCiphertext, EntryKind, ErrorCode, Send, Sync, request, response,
};
use tern_testkit::raw::{Hello, RawClient, RawError, create_chat, exchange};
use tern_testkit::{Account, RelayAddress, random};

use crate::{Args, endpoints, message_id};

/// How long one request or connection attempt may take before the
/// connection is given up as broken.
const ATTEMPT: Duration = Duration::from_secs(2);
/// Pause between attempts while the relay is unreachable.
const BACKOFF: Duration = Duration::from_millis(100);
/// How long the final check may wait for the relay to answer at all.
const CHECK_PATIENCE: Duration = Duration::from_secs(60);

/// One device of a pair: its account, its peer and their chat.
struct Device {
    account: Account,
    peer: [u8; 16],
    chat: [u8; 16],
}

/// What the senders did, over all devices.
#[derive(Default)]
struct Counts {
    attempts: AtomicU64,
    connections: AtomicU64,
}

/// A device's connection, re-established whenever it breaks: to the next
/// node when there are several.
struct Link<'a> {
    endpoint: &'a Endpoint,
    nodes: Nodes<'a>,
    account: &'a Account,
    client: Option<RawClient>,
}

/// The relay nodes a device tries in turn, starting with its own.
#[derive(Clone, Copy)]
struct Nodes<'a> {
    all: &'a [RelayAddress],
    current: usize,
}

impl<'a> Nodes<'a> {
    /// Device `index`'s nodes: node `index mod n` first.
    fn of(all: &'a [RelayAddress], index: usize) -> Self {
        Self {
            all,
            current: index % all.len().max(1),
        }
    }

    fn current(&self) -> &'a RelayAddress {
        &self.all[self.current]
    }

    /// Moves on to the next node (after the current one failed).
    fn next(&mut self) {
        self.current = (self.current + 1) % self.all.len().max(1);
    }
}

impl<'a> Link<'a> {
    fn new(endpoint: &'a Endpoint, nodes: Nodes<'a>, account: &'a Account) -> Self {
        Self {
            endpoint,
            nodes,
            account,
            client: None,
        }
    }

    /// Sends `kind` until the relay answers it (an answer may be a
    /// refusal), reconnecting as often as needed, for at most `patience`.
    async fn answer(
        &mut self,
        kind: request::Kind,
        counts: &Counts,
        patience: Duration,
    ) -> anyhow::Result<Result<response::Kind, ErrorCode>> {
        let give_up = Instant::now() + patience;
        loop {
            anyhow::ensure!(
                Instant::now() < give_up,
                "the relay did not answer for {patience:?}"
            );
            counts.attempts.fetch_add(1, Ordering::Relaxed);
            let Some(client) = self.connected(counts).await else {
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            match tokio::time::timeout(ATTEMPT, exchange(&client.conn, kind.clone())).await {
                Ok(Ok(answer)) => return Ok(Ok(answer)),
                Ok(Err(RawError::Refused(e))) => {
                    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified);
                    if code != ErrorCode::Unavailable {
                        return Ok(Err(code));
                    }
                    tokio::time::sleep(BACKOFF).await;
                }
                _ => self.drop_connection(),
            }
        }
    }

    /// The live connection, or a new one; `None` while the relay is down.
    async fn connected(&mut self, counts: &Counts) -> Option<&RawClient> {
        if self
            .client
            .as_ref()
            .is_some_and(|c| c.conn.close_reason().is_some())
        {
            self.drop_connection();
        }
        if self.client.is_none() {
            let (user, key) = (self.account.user_id, self.account.device_key(1));
            let relay = self.nodes.current();
            let login = async {
                let hello = Hello::connect(self.endpoint, relay).await?;
                hello.authenticate(user, 1, key).await
            };
            self.client = tokio::time::timeout(ATTEMPT, login)
                .await
                .ok()
                .and_then(Result::ok);
            match self.client {
                Some(_) => counts.connections.fetch_add(1, Ordering::Relaxed),
                None => {
                    self.nodes.next();
                    return None;
                }
            };
        }
        self.client.as_ref()
    }

    fn drop_connection(&mut self) {
        if let Some(client) = self.client.take() {
            client
                .conn
                .close(0u32.into(), b"giving up on this connection");
        }
    }
}

/// Registers an account, retrying (on the next node, if several) while
/// its node is down.
async fn register(
    endpoint: &Endpoint,
    mut nodes: Nodes<'_>,
    account: &Account,
) -> anyhow::Result<()> {
    let give_up = Instant::now() + CHECK_PATIENCE;
    loop {
        let relay = nodes.current();
        nodes.next();
        let attempt = async {
            let hello = Hello::connect(endpoint, relay).await?;
            hello
                .register_account(account, account.public_key(), "")
                .await
        };
        match tokio::time::timeout(ATTEMPT, attempt).await {
            Ok(Ok(_)) => return Ok(()),
            // Registered by an attempt whose answer was lost.
            Ok(Err(RawError::Refused(e))) if e.code == ErrorCode::Conflict as i32 => return Ok(()),
            _ if Instant::now() < give_up => tokio::time::sleep(BACKOFF).await,
            _ => anyhow::bail!("could not register {}", account.name),
        }
    }
}

/// Sends to the peer until `stop`; returns the acknowledged messages as
/// client message id → seq.
async fn send_until(
    endpoint: &Endpoint,
    nodes: Nodes<'_>,
    device: &Device,
    stop: Instant,
    payload: usize,
    counts: &Counts,
) -> anyhow::Result<HashMap<[u8; 16], u64>> {
    let mut link = Link::new(endpoint, nodes, &device.account);
    let mut acked = HashMap::new();
    while Instant::now() < stop {
        let cmid = message_id()?.to_wire();
        let mut body = vec![0x42; payload.max(16)];
        body[..16].copy_from_slice(&cmid);
        let send = request::Kind::Send(Send {
            chat_id: device.chat.to_vec().into(),
            client_message_id: cmid.clone(),
            device_ciphertexts: vec![DeviceCiphertext {
                user_id: device.peer.to_vec().into(),
                device_id: 1,
                ciphertext: body.into(),
            }],
            common_ciphertext: bytes::Bytes::new(),
        });
        match link.answer(send, counts, CHECK_PATIENCE).await? {
            Ok(response::Kind::SendAck(ack)) => {
                let id = <[u8; 16]>::try_from(&cmid[..])?;
                anyhow::ensure!(
                    acked.insert(id, ack.seq).is_none(),
                    "a message id acknowledged twice"
                );
            }
            other => anyhow::bail!("send answered {other:?}"),
        }
    }
    Ok(acked)
}

/// Every entry of `device`'s chat sent by its peer, as client message id →
/// the seqs it is stored at.
async fn read_log(
    endpoint: &Endpoint,
    nodes: Nodes<'_>,
    device: &Device,
    counts: &Counts,
) -> anyhow::Result<HashMap<[u8; 16], Vec<u64>>> {
    let mut link = Link::new(endpoint, nodes, &device.account);
    let mut stored: HashMap<[u8; 16], Vec<u64>> = HashMap::new();
    let mut after = 0;
    loop {
        let sync = request::Kind::Sync(Sync {
            after: vec![Cursor {
                chat_id: device.chat.to_vec().into(),
                seq: after,
            }],
            limit: 0,
        });
        let Ok(response::Kind::SyncBatch(page)) = link.answer(sync, counts, CHECK_PATIENCE).await?
        else {
            anyhow::bail!("sync was refused");
        };
        for entry in &page.entries {
            anyhow::ensure!(
                entry.seq == after + 1,
                "the log skips from {after} to {}",
                entry.seq
            );
            after = entry.seq;
            if entry.kind == EntryKind::Message as i32
                && entry.sender_user_id[..] == device.peer[..]
            {
                let id = <[u8; 16]>::try_from(&entry.client_message_id[..])?;
                stored.entry(id).or_default().push(entry.seq);
            }
        }
        if !page.more {
            return Ok(stored);
        }
    }
}

/// Runs verify mode: `args.devices` devices in pairs, sending for
/// `args.duration` seconds through whatever happens to the relay.
pub(crate) async fn verify(args: &Args) -> anyhow::Result<()> {
    let relays = Arc::new(crate::relays(args)?);
    let eps = endpoints(args, &relays[0])?;
    let counts = Arc::new(Counts::default());
    let pairs = (args.devices / 2).max(1);
    let run = hex::encode(random::<4>());
    let mut devices = Vec::new();
    for p in 0..pairs {
        let (a, b) = (
            Account::new(&format!("vf-{run}-{p}a"), 1),
            Account::new(&format!("vf-{run}-{p}b"), 1),
        );
        let ep = &eps[p % eps.len()];
        register(ep, Nodes::of(&relays, 2 * p), &a).await?;
        register(ep, Nodes::of(&relays, 2 * p + 1), &b).await?;
        let chat = random();
        let create = create_chat(chat, ChatKind::Direct, &[b.user_id]);
        match Link::new(ep, Nodes::of(&relays, 2 * p), &a)
            .answer(create, &counts, CHECK_PATIENCE)
            .await?
        {
            Ok(_) | Err(ErrorCode::Conflict) => {}
            Err(code) => anyhow::bail!("creating a chat was refused: {code:?}"),
        }
        let (a_id, b_id) = (a.user_id, b.user_id);
        devices.push(Device {
            account: a,
            peer: b_id,
            chat,
        });
        devices.push(Device {
            account: b,
            peer: a_id,
            chat,
        });
    }
    println!(
        "verify: {} devices registered; sending for {}s",
        devices.len(),
        args.duration
    );
    let devices = Arc::new(devices);
    let stop = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for i in 0..devices.len() {
        let (devices, counts, relays, ep) = (
            devices.clone(),
            counts.clone(),
            relays.clone(),
            eps[i % eps.len()].clone(),
        );
        let payload = args.payload;
        tasks.push(tokio::spawn(async move {
            let nodes = Nodes::of(&relays, i);
            send_until(&ep, nodes, &devices[i], stop, payload, &counts).await
        }));
    }
    let mut acked_by = Vec::new();
    for t in tasks {
        acked_by.push(t.await??);
    }
    let (mut acked, mut delivered, mut duplicates, mut lost) = (0, 0, 0, 0);
    for (i, device) in devices.iter().enumerate() {
        // Pairs are adjacent: device i's peer is i ^ 1.
        let sent_to_me = &acked_by[i ^ 1];
        let nodes = Nodes::of(&relays, i);
        let stored = read_log(&eps[i % eps.len()], nodes, device, &counts).await?;
        acked += sent_to_me.len();
        for (id, seq) in sent_to_me {
            match stored.get(id) {
                Some(seqs) if seqs.contains(seq) => delivered += 1,
                Some(_) => anyhow::bail!("a message is stored at another seq than acknowledged"),
                None => lost += 1,
            }
        }
        duplicates += stored.values().filter(|seqs| seqs.len() > 1).count();
    }
    let attempts = counts.attempts.load(Ordering::Relaxed);
    let connections = counts.connections.load(Ordering::Relaxed);
    println!(
        "verify: devices={} attempts={attempts} connections={connections} acknowledged={acked} delivered={delivered} duplicates={duplicates} lost={lost}",
        devices.len()
    );
    anyhow::ensure!(
        duplicates == 0 && lost == 0,
        "{lost} acknowledged messages lost, {duplicates} stored twice"
    );
    Ok(())
}
