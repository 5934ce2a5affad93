//! Encrypted store benchmarks over a 1,000,000-message history.
//!
//! The fixture (a SQLCipher store with 1M messages in 100 chats, bodies drawn
//! from a Zipf-distributed 20,000-word vocabulary) is built once and reused:
//! it lives in `$TERN_BENCH_DIR` (default: the system temp dir) under
//! `tern-store-bench-v2-<messages>`, marked complete by a `complete` file.
//!
//! Besides criterion's mean/median, the search groups print their own latency
//! distribution (p50/p90/p99/max over 200 distinct queries × 3 rounds).
//!
//! `cargo bench -p tern-core --bench store`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use tern_crypto::store_key::{self as key, KdfParams};
use tern_store::{
    Chat, ChatKind, DeviceAddress, KeySource, NewMessage, SearchQuery, Store, StoreError,
};

/// History size under `cargo bench`; `cargo test --benches` runs every
/// benchmark once over [`SMOKE_MESSAGES`] instead.
const MESSAGES: u32 = 1_000_000;
const SMOKE_MESSAGES: u32 = 20_000;
const CHATS: u32 = 100;
const SENDERS: u32 = 20;
const BATCH: u32 = 10_000;
const VOCABULARY: usize = 20_000;
const QUERIES: usize = 200;
const ROUNDS: usize = 3;
const KEY: [u8; 32] = [0x42; 32];
const START_MS: i64 = 1_700_000_000_000;
/// One message every 30 s: a year of history.
const STEP_MS: i64 = 30_000;

/// Deterministic non-cryptographic generator (SplitMix64) for fixture data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Pronounceable synthetic words; index 0 is the most frequent.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 32] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "fu", "gi", "ho", "ja", "ke",
        "li", "mo", "nu", "pa", "qui", "ri", "se", "to", "ul", "va", "we", "xi", "yo", "za", "bre",
        "cha", "dro",
    ];
    let mut rng = SplitMix(7);
    let mut words = std::collections::BTreeSet::new();
    let mut ordered = Vec::with_capacity(VOCABULARY);
    while ordered.len() < VOCABULARY {
        let len = 1 + rng.below(3);
        let word: String = (0..len)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        if words.insert(word.clone()) {
            ordered.push(word);
        }
    }
    ordered
}

/// Samples word ranks with Zipf(1) frequencies.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / rank as f64;
            cdf.push(sum);
        }
        Self(cdf.into_iter().map(|c| c / sum).collect())
    }

    fn sample(&self, rng: &mut SplitMix) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

fn chat_id(n: u32) -> [u8; 16] {
    let mut id = [0xc4; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

fn fixture_dir(messages: u32) -> PathBuf {
    std::env::var_os("TERN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("tern-store-bench-v2-{messages}"))
}

/// Returns the fixture database of `messages` messages, building it first if needed.
fn fixture(words: &[String], messages: u32) -> PathBuf {
    let dir = fixture_dir(messages);
    let path = dir.join("tern.db");
    if dir.join("complete").exists() {
        return path;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let store = Store::open(&path, KeySource::raw(KEY)).unwrap();
    store
        .transaction(|tx| {
            (0..CHATS).try_for_each(|n| {
                tx.upsert_chat(&Chat {
                    chat_id: chat_id(n),
                    kind: ChatKind::Group,
                    title: format!("chat {n}"),
                    created_at_ms: START_MS,
                })
            })
        })
        .unwrap();
    let zipf = Zipf::new(words.len());
    let mut rng = SplitMix(42);
    let mut seqs = vec![0u64; CHATS as usize];
    for batch in 0..messages / BATCH {
        store
            .transaction(|tx| {
                for i in 0..BATCH {
                    let n = batch * BATCH + i;
                    let chat = rng.below(CHATS as usize);
                    seqs[chat] += 1;
                    let len = 4 + rng.below(17);
                    let body = (0..len)
                        .map(|_| words[zipf.sample(&mut rng)].as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let mut client_message_id = [0u8; 16];
                    client_message_id[..4].copy_from_slice(&n.to_be_bytes());
                    tx.insert_message(&NewMessage {
                        chat_id: chat_id(chat as u32),
                        relay_seq: Some(seqs[chat]),
                        client_message_id,
                        sender: DeviceAddress {
                            user_id: [(n % SENDERS) as u8; 16],
                            device_id: 1,
                        },
                        sent_at_ms: START_MS + i64::from(n) * STEP_MS,
                        received_at_ms: START_MS + i64::from(n) * STEP_MS + 40,
                        body,
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    drop(store);
    std::fs::write(dir.join("complete"), b"").unwrap();
    eprintln!(
        "built fixture of {messages} messages in {:.1} s at {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    path
}

/// Named query sets, each [`QUERIES`] long.
fn query_sets(words: &[String]) -> Vec<(&'static str, Vec<SearchQuery>)> {
    let mut rng = SplitMix(99);
    let mut typical = || {
        let terms = 1 + rng.below(2);
        let text = (0..terms)
            .map(|_| words[rng.below(words.len())].as_str())
            .collect::<Vec<_>>();
        (
            SearchQuery::new(text.join(" ")),
            rng.below(CHATS as usize),
            rng.below(330),
        )
    };
    let mut plain = Vec::new();
    let mut in_chat = Vec::new();
    let mut in_month = Vec::new();
    for _ in 0..QUERIES {
        let (query, chat, day) = typical();
        plain.push(query.clone());
        let mut chat_query = query.clone();
        chat_query.chat_id = Some(chat_id(chat as u32));
        in_chat.push(chat_query);
        let mut month_query = query;
        let since = START_MS + day as i64 * 86_400_000;
        month_query.since_ms = Some(since);
        month_query.until_ms = Some(since + 30 * 86_400_000);
        in_month.push(month_query);
    }
    let common = (0..QUERIES)
        .map(|i| SearchQuery::new(words[i % 10].clone()))
        .collect();
    vec![
        ("uniform_vocabulary_word", plain),
        ("uniform_word_in_one_chat", in_chat),
        ("uniform_word_in_30_days", in_month),
        ("top10_most_frequent_word", common),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn print_distribution(store: &Store, name: &str, queries: &[SearchQuery]) {
    for query in queries {
        black_box(store.search(query).unwrap());
    }
    let mut samples = Vec::with_capacity(queries.len() * ROUNDS);
    let mut hits = 0;
    for _ in 0..ROUNDS {
        for query in queries {
            let started = Instant::now();
            let found = store.search(query).unwrap();
            samples.push(started.elapsed());
            hits += found.len();
        }
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "search/{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms (avg hits {:.1}; loadavg {})",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
        hits as f64 / samples.len() as f64,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
}

fn bench_search(c: &mut Criterion, store: &Store, sets: &[(&'static str, Vec<SearchQuery>)]) {
    let mut group = c.benchmark_group("store_search_1m");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for (name, queries) in sets {
        print_distribution(store, name, queries);
        let mut next = queries.iter().cycle();
        group.bench_function(*name, |b| {
            b.iter(|| black_box(store.search(next.next().unwrap()).unwrap()))
        });
    }
    group.finish();
}

fn bench_open(c: &mut Criterion, path: &PathBuf) {
    let mut group = c.benchmark_group("store_open_1m");
    group.sample_size(20);
    group.bench_function("open_raw_key", |b| {
        b.iter_with_large_drop(|| Store::open(path, KeySource::raw(KEY)).unwrap())
    });
    group.bench_function("open_raw_key_and_read_latest_page", |b| {
        b.iter_with_large_drop(|| {
            let store = Store::open(path, KeySource::raw(KEY)).unwrap();
            let page = store
                .transaction(|tx| tx.chat_messages(&chat_id(0), None, 50))
                .unwrap();
            assert_eq!(page.len(), 50);
            store
        })
    });
    group.finish();
}

fn bench_kdf(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_kdf");
    group.sample_size(10);
    let params = KdfParams::default();
    group.bench_function("argon2id_default_64MiB_t3_p4", |b| {
        b.iter_batched(
            || [7u8; key::SALT_LEN],
            |salt| key::derive_key("correct horse battery staple", &salt, params).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let words = vocabulary();
    let path = fixture(&words, if full { MESSAGES } else { SMOKE_MESSAGES });
    let mut criterion = Criterion::default().configure_from_args();
    bench_open(&mut criterion, &path);
    let store = Store::open(&path, KeySource::raw(KEY)).unwrap();
    bench_search(&mut criterion, &store, &query_sets(&words));
    drop(store);
    bench_kdf(&mut criterion);
    criterion.final_summary();
}
