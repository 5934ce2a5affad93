//! Send → receive latency between two `Client`s through a relay on
//! 127.0.0.1 (QUIC, SQLCipher stores with `synchronous = FULL` on both ends):
//! from `send_text` on Alice until Bob's `MessageReceived` event, which Bob
//! emits only after the message, its ratchet state and cursor are committed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tern_core::ClientEvent;
use tern_testkit::{TestClient, TestRelay};

fn latency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (relay, alice, bob, chat) = runtime.block_on(async {
        let relay = TestRelay::start().await;
        let alice = TestClient::create(&relay, "alice").await;
        let mut bob = TestClient::create(&relay, "bob").await;
        let bob_id = alice
            .client
            .add_contact("bob".into())
            .await
            .unwrap()
            .user_id;
        let chat = alice.client.direct_chat(bob_id).unwrap();
        // Establish sessions both ways before measuring.
        alice.client.send_text(chat, "warm-up".into()).unwrap();
        bob.next_message().await;
        bob.client.send_text(chat, "warm-up".into()).unwrap();
        (relay, alice, bob, chat)
    });
    let mut bob = bob;
    let mut group = c.benchmark_group("client");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("send_to_receive_1to1", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let text = format!("latency probe {i}");
                    let start = Instant::now();
                    alice.client.send_text(chat, text.clone()).unwrap();
                    loop {
                        if let Some(ClientEvent::MessageReceived(m)) = bob.events.next().await {
                            if m.text == text {
                                break;
                            }
                        }
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    runtime.block_on(async {
        alice.client.shutdown().await;
        bob.client.shutdown().await;
        relay.stop().await;
    });
}

criterion_group!(benches, latency);
criterion_main!(benches);
