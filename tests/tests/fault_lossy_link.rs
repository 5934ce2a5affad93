//! Fault injection: a lossy link. Every client reaches the relay through an
//! in-process UDP proxy ([`LossyLink`]) that drops, duplicates, delays and
//! reorders datagrams both ways ([`LinkProfile::lossy`]: 5 % loss, 1 %
//! duplication, 5 % reordering, 20–80 ms jitter). Four users chat at once
//! in two 1:1 chats and a group of all four; every message the relay
//! acknowledged reaches every other member exactly once, in the order the
//! relay gave it (the same for everyone, and each sender's own order).
//! Connections the link breaks are re-established by the clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_core::{ChatId, ClientEvent, UNDECRYPTABLE_TEXT};
use tern_testkit::relay::pinned;
use tern_testkit::{LinkProfile, LossyLink, TestClient, TestRelay, guard};

/// Messages each user sends into each of its chats.
const PER_CHAT: usize = 30;
/// How long acknowledgements, then deliveries, may take (a bound, not a
/// timing assert).
const BOUND: Duration = Duration::from_secs(120);
/// History page large enough for a whole chat.
const PAGE: u32 = 1000;
const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// A chat of the scenario: its label (in message texts), id and members
/// (indexes into the users).
struct Chat {
    label: &'static str,
    id: ChatId,
    members: Vec<usize>,
}

/// What one client's event stream showed.
#[derive(Default)]
struct Seen {
    /// `MessageReceived` events per text.
    received: HashMap<String, u32>,
    disconnects: u32,
    lagged: u64,
    send_failures: Vec<String>,
    decrypt_failures: u32,
}

/// Counts `client`'s events from now on.
fn watch(client: &TestClient) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut events = client.client.subscribe();
    let counting = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let mut seen = counting.lock().unwrap();
            match event {
                ClientEvent::MessageReceived(m) => *seen.received.entry(m.text).or_default() += 1,
                ClientEvent::Disconnected { .. } => seen.disconnects += 1,
                ClientEvent::Lagged { missed } => seen.lagged += missed,
                ClientEvent::SendFailed { reason, .. } => seen.send_failures.push(reason),
                ClientEvent::DecryptionFailed { .. } => seen.decrypt_failures += 1,
                _ => {}
            }
        }
    });
    (seen, task)
}

/// One sent message: its text and the sender's local message.
struct Sent {
    text: String,
    message: tern_core::Message,
}

/// Polls `done` every 100 ms until it holds or `deadline` passes; returns
/// whether it held.
async fn poll_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `client`'s history of `chat` as (text, sender, seq), in seq order,
/// messages the relay has not stored yet left out.
fn history(client: &TestClient, chat: ChatId) -> Vec<(String, [u8; 16], u64)> {
    client
        .client
        .messages(chat, None, PAGE)
        .unwrap()
        .into_iter()
        .filter_map(|m| Some((m.text, m.sender, m.seq?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_link_loses_and_duplicates_no_acknowledged_message() {
    let started = Instant::now();
    let relay = TestRelay::start().await;
    let link = LossyLink::start(relay.addr, LinkProfile::lossy());
    let via_link = pinned(link.addr(), &relay.fingerprint).unwrap();

    // Everything from the first handshake on goes through the link; the
    // accounts are created at once.
    let create = |name: &'static str| {
        let address = via_link.clone();
        TestClient::create_configured(&relay, name, move |config| config.relay = address)
    };
    let (a, b, c, d) = tokio::join!(
        create(NAMES[0]),
        create(NAMES[1]),
        create(NAMES[2]),
        create(NAMES[3])
    );
    let users = [a, b, c, d];
    let watchers: Vec<_> = users.iter().map(watch).collect();
    let ids: Vec<[u8; 16]> = users.iter().map(|u| u.client.account().user_id).collect();
    for (i, user) in users.iter().enumerate() {
        for (j, name) in NAMES.iter().enumerate() {
            if i != j {
                assert_eq!(user.contact(name).await, ids[j]);
            }
        }
    }
    let direct = |from: usize, to: usize| users[from].client.direct_chat(ids[to]).unwrap();
    let (ab, cd) = (direct(0, 1), direct(2, 3));
    assert_eq!(direct(1, 0), ab);
    assert_eq!(direct(3, 2), cd);
    let group = guard(
        users[0]
            .client
            .create_group("all".into(), ids[1..].to_vec()),
    )
    .await
    .unwrap();
    for user in &users[1..] {
        guard(async {
            while !user
                .client
                .chats()
                .unwrap()
                .iter()
                .any(|c| c.chat_id == group)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    let chats = [
        Chat {
            label: "ab",
            id: ab,
            members: vec![0, 1],
        },
        Chat {
            label: "cd",
            id: cd,
            members: vec![2, 3],
        },
        Chat {
            label: "group",
            id: group,
            members: vec![0, 1, 2, 3],
        },
    ];
    let setup = started.elapsed();

    // Every user sends into each of its chats, all at once, a little paced.
    let sending = Instant::now();
    let mut sent: HashMap<(usize, usize), Vec<Sent>> = HashMap::new();
    for i in 0..PER_CHAT {
        for (u, user) in users.iter().enumerate() {
            for (c, chat) in chats.iter().enumerate() {
                if !chat.members.contains(&u) {
                    continue;
                }
                let text = format!("{} in {} #{i:02}", NAMES[u], chat.label);
                let message = user.client.send_text(chat.id, text.clone()).unwrap();
                sent.entry((u, c)).or_default().push(Sent { text, message });
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_sent: usize = sent.values().map(Vec::len).sum();

    // Acknowledged: the relay stored it and gave it a seq (✓).
    let ack_seqs = |(u, c): (usize, usize), list: &[Sent]| -> Vec<Option<u64>> {
        let seqs: HashMap<_, _> = users[u]
            .client
            .messages(chats[c].id, None, PAGE)
            .unwrap()
            .into_iter()
            .map(|m| (m.id, m.seq))
            .collect();
        list.iter()
            .map(|s| seqs.get(&s.message.id).copied().flatten())
            .collect()
    };
    let deadline = Instant::now() + BOUND;
    let all_acked = poll_until(deadline, || {
        sent.iter()
            .all(|(key, list)| ack_seqs(*key, list).iter().all(Option::is_some))
    })
    .await;
    let acked_after = sending.elapsed();
    // chat → (text → (sender, seq)) of the acknowledged messages.
    let mut acked: Vec<HashMap<String, (usize, u64)>> = vec![HashMap::new(); chats.len()];
    let mut sender_order_broken = Vec::new();
    for (&(u, c), list) in &sent {
        let seqs = ack_seqs((u, c), list);
        let mut last = 0;
        for (s, seq) in list.iter().zip(seqs) {
            let Some(seq) = seq else { continue };
            if seq <= last {
                sender_order_broken.push(format!("{} (seq {seq} after {last})", s.text));
            }
            last = seq;
            acked[c].insert(s.text.clone(), (u, seq));
        }
    }
    let total_acked: usize = acked.iter().map(HashMap::len).sum();

    // Wait until every member has every acknowledged message of its chats.
    let deadline = Instant::now() + BOUND;
    let complete = poll_until(deadline, || {
        chats.iter().enumerate().all(|(c, chat)| {
            chat.members.iter().all(|&m| {
                let have: Vec<String> = history(&users[m], chat.id)
                    .into_iter()
                    .map(|h| h.0)
                    .collect();
                acked[c].keys().all(|t| have.contains(t))
            })
        })
    })
    .await;
    let delivered_after = sending.elapsed();
    // Late duplicates would arrive now.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Count, per member and chat: each acknowledged message once, at the
    // seq the relay acknowledged, in relay order.
    let (mut expected, mut delivered, mut duplicates, mut lost) = (0, 0, 0, 0);
    let mut event_duplicates = 0;
    let mut problems = Vec::new();
    for (c, chat) in chats.iter().enumerate() {
        let mut canonical: Vec<(&String, u64)> =
            acked[c].iter().map(|(t, (_, seq))| (t, *seq)).collect();
        canonical.sort_by_key(|(_, seq)| *seq);
        for &m in &chat.members {
            let entries = history(&users[m], chat.id);
            let mut copies: HashMap<&str, u32> = HashMap::new();
            for (text, sender, seq) in &entries {
                *copies.entry(text).or_default() += 1;
                match acked[c].get(text) {
                    Some((u, acked_seq)) => {
                        if *sender != ids[*u] || seq != acked_seq {
                            problems.push(format!(
                                "{} has {text:?} from {} at seq {seq}, acknowledged at {acked_seq}",
                                NAMES[m],
                                ids.iter()
                                    .position(|id| id == sender)
                                    .map_or("someone else", |i| NAMES[i]),
                            ));
                        }
                    }
                    None if text == UNDECRYPTABLE_TEXT => {
                        problems.push(format!("{} still shows a marker at seq {seq}", NAMES[m]));
                    }
                    None => problems.push(format!("{} has unexpected {text:?}", NAMES[m])),
                }
            }
            let seen = watchers[m].0.lock().unwrap();
            for (text, (u, _)) in &acked[c] {
                if *u == m {
                    continue;
                }
                expected += 1;
                match copies.get(text.as_str()).copied().unwrap_or(0) {
                    0 => {
                        lost += 1;
                        problems.push(format!("{} never got {text:?}", NAMES[m]));
                    }
                    n => {
                        delivered += 1;
                        duplicates += n - 1;
                        if n > 1 {
                            problems.push(format!("{} has {text:?} {n} times", NAMES[m]));
                        }
                    }
                }
                let events = seen.received.get(text).copied().unwrap_or(0);
                if events > 1 {
                    event_duplicates += events - 1;
                    problems.push(format!("{} was told of {text:?} {events} times", NAMES[m]));
                }
            }
            let order: Vec<(&String, u64)> = entries
                .iter()
                .filter(|(t, ..)| acked[c].contains_key(t))
                .map(|(t, _, seq)| (t, *seq))
                .collect();
            if order != canonical {
                problems.push(format!(
                    "{} sees chat {} in another order than the relay's",
                    NAMES[m], chat.label
                ));
            }
        }
    }
    let reconnects: u32 = watchers
        .iter()
        .map(|w| w.0.lock().unwrap().disconnects)
        .sum();
    let lagged: u64 = watchers.iter().map(|w| w.0.lock().unwrap().lagged).sum();
    let decrypt_failures: u32 = watchers
        .iter()
        .map(|w| w.0.lock().unwrap().decrypt_failures)
        .sum();
    let send_failures: Vec<String> = watchers
        .iter()
        .flat_map(|w| w.0.lock().unwrap().send_failures.clone())
        .collect();
    println!(
        "lossy link [{profile}; seed {seed:#018x}] {users} users, {chats} chats, {PER_CHAT} messages \
         per sender per chat: sent {total_sent}, acknowledged {total_acked}, delivered \
         {delivered}/{expected}, duplicates {dups} (history {duplicates}, events \
         {event_duplicates}), lost {lost}; sender order breaks {breaks}, reconnects \
         {reconnects}, decrypt failures {decrypt_failures}, events lagged {lagged}; proxy: \
         {stats}; setup {setup:.1?}, acked after {acked_after:.1?}, delivered after \
         {delivered_after:.1?}, total {total:.1?}",
        profile = link.profile(),
        seed = link.seed(),
        users = users.len(),
        chats = chats.len(),
        dups = duplicates + event_duplicates,
        breaks = sender_order_broken.len(),
        stats = link.stats(),
        total = started.elapsed(),
    );
    for problem in sender_order_broken.iter().chain(&problems).take(40) {
        println!("  {problem}");
    }

    assert!(
        all_acked,
        "not every message was acknowledged within {BOUND:?}"
    );
    assert!(
        complete,
        "not every acknowledged message arrived within {BOUND:?}"
    );
    assert!(send_failures.is_empty(), "sends failed: {send_failures:?}");
    assert_eq!(total_acked, total_sent);
    assert_eq!(duplicates + event_duplicates, 0, "duplicates");
    assert_eq!(lost, 0, "lost");
    assert!(sender_order_broken.is_empty(), "{sender_order_broken:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(lagged, 0, "the event counts are complete");

    for (_, task) in watchers {
        task.abort();
    }
    relay.stop().await;
    drop(link);
}
