//! The Rust side of the bindings benchmark (`bench/ffi-vs-rust.sh`): a pair
//! of tern-core clients in one process, against the relay named by
//! `TERN_RELAY` (`host:port`) and `TERN_FINGERPRINT`. `bench/ffi_pair.py`
//! does exactly the same through the Python bindings.
//!
//! Prints one JSON object: one-way send→receive latency of messages sent
//! one at a time (p50, p99, µs), messages per second of a burst, and the
//! cost of a trivial call (`account()`, ns).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::{
    CertFingerprint, ChatId, Client, ClientConfig, ClientEvent, EventSubscription, KeySource,
    RelayAddress, TrustPolicy,
};

const LATENCY_MESSAGES: usize = 300;
const BURST_MESSAGES: usize = 3000;
const TRIVIAL_CALLS: u32 = 100_000;
const WAIT: Duration = Duration::from_secs(60);

type Failure = Box<dyn std::error::Error>;

fn relay() -> Result<RelayAddress, Failure> {
    let addr = std::env::var("TERN_RELAY")?.parse()?;
    let pin: CertFingerprint = std::env::var("TERN_FINGERPRINT")?.parse()?;
    Ok(RelayAddress::new(
        addr,
        "tern-relay",
        TrustPolicy::Pinned(pin),
    ))
}

async fn person(dir: &std::path::Path, name: &str) -> Result<Client, Failure> {
    let config = ClientConfig::new(dir.join(format!("{name}.db")), relay()?);
    let client = Client::create(config, KeySource::raw(rand::random()), name.into(), None).await?;
    client.wait_online(WAIT).await?;
    Ok(client)
}

/// Waits for the next received message.
async fn next_message(events: &mut EventSubscription) -> Result<String, Failure> {
    loop {
        let event = tokio::time::timeout(WAIT, events.next())
            .await?
            .ok_or("events ended")?;
        if let ClientEvent::MessageReceived(message) = event {
            return Ok(message.text);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

async fn latency(
    alice: &Client,
    chat: ChatId,
    bob: &mut EventSubscription,
) -> Result<Vec<f64>, Failure> {
    let mut micros = Vec::with_capacity(LATENCY_MESSAGES);
    for i in 0..LATENCY_MESSAGES {
        let started = Instant::now();
        alice.send_text(chat, format!("ping {i}"))?;
        next_message(bob).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    Ok(micros)
}

async fn burst(alice: &Client, chat: ChatId, bob: &mut EventSubscription) -> Result<f64, Failure> {
    let started = Instant::now();
    for i in 0..BURST_MESSAGES {
        alice.send_text(chat, format!("burst {i}"))?;
    }
    for _ in 0..BURST_MESSAGES {
        next_message(bob).await?;
    }
    Ok(BURST_MESSAGES as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let dir = tempfile::tempdir()?;
    let tag = std::process::id();
    let alice = Arc::new(person(dir.path(), &format!("ra{tag}")).await?);
    let bob = person(dir.path(), &format!("rb{tag}")).await?;
    let mut bob_events = bob.subscribe();
    let contact = alice.add_contact(bob.account().user_name).await?;
    let chat = alice.direct_chat(contact.user_id)?;
    // Warm up the session (the first message carries the prekey handshake).
    alice.send_text(chat, "warm-up".into())?;
    next_message(&mut bob_events).await?;

    let micros = latency(&alice, chat, &mut bob_events).await?;
    let rate = burst(&alice, chat, &mut bob_events).await?;
    let started = Instant::now();
    for _ in 0..TRIVIAL_CALLS {
        std::hint::black_box(alice.account());
    }
    let call_ns = started.elapsed().as_nanos() as f64 / f64::from(TRIVIAL_CALLS);
    println!(
        "{{\"side\": \"rust\", \"p50_us\": {:.0}, \"p99_us\": {:.0}, \"msgs_per_s\": {:.0}, \"call_ns\": {:.0}}}",
        percentile(&micros, 0.5),
        percentile(&micros, 0.99),
        rate,
        call_ns
    );
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(())
}
