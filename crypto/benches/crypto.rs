//! Tern's crypto against vodozemac (Olm and Megolm) in the same run.
//!
//! `cargo bench -p tern-core --bench crypto`. Every message is 100 bytes.
//!
//! What a session set-up measures, on both sides the same steps:
//! 1. initiator: session from the peer's published keys (tern: PQXDH against a
//!    prekey bundle, including checking its two signatures; Olm: 3DH against the
//!    identity key and a one-time key) and encryption of a first 100-byte message;
//! 2. the first message's wire bytes are encoded and decoded;
//! 3. responder: session from that message (tern: PQXDH with the named prekeys;
//!    Olm: 3DH) and decryption of the first message.
//!
//! Keys published before the set-up are made outside the timed region on both
//! sides (tern's bundle and prekeys; Olm's account and one-time key, made fresh and
//! untimed for each Olm set-up because Olm consumes the one-time key). Neither side
//! includes the responder's reply. Olm does not check a signature on the one-time
//! key (a Matrix client does that outside vodozemac); tern's bundle check is inside.
//!
//! X25519 operations per set-up: tern ten (initiator DH1..DH4 and the Double
//! Ratchet's initial DH against the signed prekey; the responder the same four and
//! the receiving DH step of the first message), Olm six (3DH on each side, its first
//! chains come straight from the 3DH secret). The `X25519 floor` line prints what
//! those ten operations alone cost against the Olm set-up, in the same run.

// `criterion_group!` generates an undocumented public function; a benchmark whose
// set-up fails must abort, so unwrapping is the intended behaviour here.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use tern_crypto::identity::DeviceIdentity;
use tern_crypto::pqxdh::PreKeyMessage;
use tern_crypto::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use tern_crypto::ratchet::RatchetMessage;
use tern_crypto::sender_key::{GroupSender, SenderKeyMessage, SenderKeyRecord};
use tern_crypto::session::{
    DeviceAddress, InMemoryStore, Session, SessionManager, SessionRecord, SessionStore,
};
use vodozemac::Curve25519PublicKey;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig as MegolmConfig};
use vodozemac::olm::{
    Account, OlmMessage, PreKeyMessage as OlmPreKeyMessage, Session as OlmSession, SessionConfig,
    SessionPickle,
};

const MESSAGE: [u8; 100] = [0x42; 100];

struct Responder {
    identity: DeviceIdentity,
    signed: SignedPreKey,
    one_time: OneTimePreKey,
    kem: KemPreKey,
    bundle: PreKeyBundle,
}

/// Bob's bundle without its KEM prekey (classical X3DH).
fn classical_bundle(bob: &Responder) -> PreKeyBundle {
    PreKeyBundle {
        kem_prekey: None,
        ..bob.bundle.clone()
    }
}

fn responder(rng: &mut ChaCha20Rng) -> Responder {
    let identity = DeviceIdentity::generate(rng);
    let signed = SignedPreKey::generate(1, &identity, rng);
    let one_time = OneTimePreKey::generate_batch(1, 1, rng).remove(0);
    let kem = KemPreKey::generate(1, KemPreKeyKind::OneTime, &identity, rng);
    let bundle = PreKeyBundle {
        identity_key: identity.public_key(),
        signed_prekey: signed.public(),
        one_time_prekey: Some(one_time.public()),
        kem_prekey: Some(kem.public()),
    };
    Responder {
        identity,
        signed,
        one_time,
        kem,
        bundle,
    }
}

/// Initiator and responder run PQXDH and exchange one message each way.
fn tern_pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let alice = DeviceIdentity::generate(rng);
    let bob = responder(rng);
    let mut a = Session::initiate(&alice, &bob.bundle, true, rng).unwrap();
    let first = PreKeyMessage::decode(&a.encrypt(&MESSAGE, rng).unwrap()).unwrap();
    let (mut b, _) = Session::respond(
        &bob.identity,
        &first,
        &bob.signed,
        Some(&bob.one_time),
        Some(&bob.kem),
    )
    .unwrap();
    let reply = RatchetMessage::decode(&b.encrypt(&MESSAGE, rng).unwrap()).unwrap();
    a.decrypt(&reply).unwrap();
    (a, b)
}

fn olm_pair() -> (OlmSession, OlmSession) {
    let alice = Account::new();
    let (mut bob, otk) = olm_responder();
    let mut a = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(first) = a.encrypt(MESSAGE).unwrap() else {
        unreachable!()
    };
    let mut b = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &first)
        .unwrap()
        .session;
    let reply = b.encrypt(MESSAGE).unwrap();
    a.decrypt(&reply).unwrap();
    (a, b)
}

fn tern_round(from: &mut Session, to: &mut Session, rng: &mut ChaCha20Rng) {
    let bytes = from.encrypt(&MESSAGE, rng).unwrap();
    black_box(
        to.decrypt(&RatchetMessage::decode(&bytes).unwrap())
            .unwrap(),
    );
}

fn olm_round(from: &mut OlmSession, to: &mut OlmSession) {
    let message = from.encrypt(MESSAGE).unwrap();
    black_box(to.decrypt(&message).unwrap());
}

fn one_way(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut group = c.benchmark_group("one_way_100B");
    let (mut a, mut b) = tern_pair(&mut rng);
    group.bench_function("tern", |bench| {
        bench.iter(|| tern_round(&mut a, &mut b, &mut rng))
    });
    let (mut a, mut b) = olm_pair();
    group.bench_function("vodozemac_olm", |bench| {
        bench.iter(|| olm_round(&mut a, &mut b))
    });
    group.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut group = c.benchmark_group("ping_pong_100B");
    let (mut a, mut b) = tern_pair(&mut rng);
    group.bench_function("tern", |bench| {
        bench.iter(|| {
            tern_round(&mut a, &mut b, &mut rng);
            tern_round(&mut b, &mut a, &mut rng);
        })
    });
    let (mut a, mut b) = olm_pair();
    group.bench_function("vodozemac_olm", |bench| {
        bench.iter(|| {
            olm_round(&mut a, &mut b);
            olm_round(&mut b, &mut a);
        })
    });
    group.finish();
}

/// Tern's set-up against `bundle` (with or without its KEM prekey, see the module docs).
fn tern_setup(
    bob: &Responder,
    bundle: &PreKeyBundle,
    alice: &DeviceIdentity,
    rng: &mut ChaCha20Rng,
) {
    let with_kem = bundle.kem_prekey.is_some();
    let mut a = Session::initiate(alice, bundle, with_kem, rng).unwrap();
    let first = PreKeyMessage::decode(&a.encrypt(&MESSAGE, rng).unwrap()).unwrap();
    let kem = with_kem.then_some(&bob.kem);
    black_box(
        Session::respond(&bob.identity, &first, &bob.signed, Some(&bob.one_time), kem).unwrap(),
    );
}

/// A fresh Olm responder account with one published one-time key (untimed preparation).
fn olm_responder() -> (Account, Curve25519PublicKey) {
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    bob.mark_keys_as_published();
    (bob, otk)
}

/// Olm's set-up, the same steps as [`tern_setup`].
fn olm_setup(alice: &Account, (mut bob, otk): (Account, Curve25519PublicKey)) {
    let mut a = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(first) = a.encrypt(MESSAGE).unwrap() else {
        unreachable!()
    };
    let first = OlmPreKeyMessage::from_bytes(&first.to_bytes()).unwrap();
    black_box(
        bob.create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &first)
            .unwrap(),
    );
}

/// The Diffie-Hellman part of tern's set-up alone: ten X25519 operations.
fn x25519_floor(secret: &x25519_dalek::StaticSecret, public: &x25519_dalek::PublicKey) {
    for _ in 0..10 {
        black_box(secret.diffie_hellman(black_box(public)));
    }
}

fn setup(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let mut group = c.benchmark_group("session_setup");
    let alice = DeviceIdentity::generate(&mut rng);
    let bob = responder(&mut rng);
    let classical = classical_bundle(&bob);
    group.bench_function("tern_pqxdh", |bench| {
        bench.iter(|| tern_setup(&bob, &bob.bundle, &alice, &mut rng))
    });
    group.bench_function("tern_bundle_verify_only", |bench| {
        bench.iter(|| bob.bundle.verify().unwrap())
    });
    group.bench_function("tern_x3dh_no_kem", |bench| {
        bench.iter(|| tern_setup(&bob, &classical, &alice, &mut rng))
    });
    let olm_alice = Account::new();
    group.bench_function("vodozemac_olm", |bench| {
        bench.iter_batched(
            olm_responder,
            |bob| olm_setup(&olm_alice, bob),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn group_messages(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let mut group = c.benchmark_group("group_100B");
    let mut sender = GroupSender::new([7; 16], &mut rng);
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution(&sender.distribution_message());
    group.bench_function("tern_sender_key_encrypt", |bench| {
        bench.iter(|| black_box(sender.encrypt(&MESSAGE).unwrap()))
    });
    let mut sender = GroupSender::new([8; 16], &mut rng);
    receiver.process_distribution(&sender.distribution_message());
    group.bench_function("tern_sender_key_encrypt_decrypt", |bench| {
        bench.iter(|| {
            let message = SenderKeyMessage::decode(&sender.encrypt(&MESSAGE).unwrap()).unwrap();
            black_box(receiver.decrypt(&message).unwrap())
        })
    });
    let mut outbound = GroupSession::new(MegolmConfig::version_1());
    group.bench_function("vodozemac_megolm_encrypt", |bench| {
        bench.iter(|| black_box(outbound.encrypt(MESSAGE)))
    });
    let mut outbound = GroupSession::new(MegolmConfig::version_1());
    let mut inbound = InboundGroupSession::new(&outbound.session_key(), MegolmConfig::version_1());
    group.bench_function("vodozemac_megolm_encrypt_decrypt", |bench| {
        bench.iter(|| {
            let message = outbound.encrypt(MESSAGE);
            black_box(inbound.decrypt(&message).unwrap())
        })
    });
    group.finish();
}

fn skipped(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut group = c.benchmark_group("decrypt_after_skipping_1000");
    let (mut a, b) = tern_pair(&mut rng);
    for _ in 0..1000 {
        a.encrypt(&MESSAGE, &mut rng).unwrap();
    }
    let last = RatchetMessage::decode(&a.encrypt(&MESSAGE, &mut rng).unwrap()).unwrap();
    group.bench_function("tern", |bench| {
        bench.iter_batched(
            || b.clone(),
            |mut b| {
                let plaintext = b.decrypt(&last).unwrap();
                (b, plaintext)
            },
            BatchSize::SmallInput,
        )
    });
    let (mut a, b) = olm_pair();
    for _ in 0..1000 {
        a.encrypt(MESSAGE).unwrap();
    }
    let last = a.encrypt(MESSAGE).unwrap();
    let pickle = b.pickle().encrypt(&[0; 32]);
    group.bench_function("vodozemac_olm", |bench| {
        bench.iter_batched(
            || OlmSession::from_pickle(SessionPickle::from_encrypted(&pickle, &[0; 32]).unwrap()),
            |mut b| {
                let plaintext = b.decrypt(&last).unwrap();
                (b, plaintext)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Runs `tern` and `baseline` alternately, `rounds` times `iterations` each, and
/// returns the fastest round's time per iteration for both (µs). `prepare` runs
/// untimed before every round. On a shared, noisy machine short interleaved rounds
/// and their minimum compare the two under the same conditions, which criterion's
/// one-after-the-other groups cannot.
fn paired(
    rounds: usize,
    iterations: usize,
    mut prepare: impl FnMut(),
    mut tern: impl FnMut(usize),
    mut baseline: impl FnMut(usize),
) -> (f64, f64) {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        prepare();
        let start = Instant::now();
        (0..iterations).for_each(&mut tern);
        best.0 = best
            .0
            .min(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
        let start = Instant::now();
        (0..iterations).for_each(&mut baseline);
        best.1 = best
            .1
            .min(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    best
}

fn report(name: &str, (tern, baseline): (f64, f64)) {
    println!(
        "paired {name:<36} tern {tern:>9.2} µs   vodozemac {baseline:>9.2} µs   ratio {:.2}",
        tern / baseline
    );
}

/// Interleaved tern/vodozemac comparisons, printed before the criterion groups.
fn paired_ratios() {
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let (mut a, mut b) = tern_pair(&mut rng);
    let (mut oa, mut ob) = olm_pair();
    report(
        "one-way encrypt+decrypt",
        paired(
            300,
            20,
            || {},
            |_| tern_round(&mut a, &mut b, &mut rng),
            |_| olm_round(&mut oa, &mut ob),
        ),
    );
    let mut rng2 = ChaCha20Rng::from_seed([10; 32]);
    report(
        "ping-pong round trip (2 DH steps)",
        paired(
            300,
            1,
            || {},
            |_| {
                tern_round(&mut a, &mut b, &mut rng2);
                tern_round(&mut b, &mut a, &mut rng2);
            },
            |_| {
                olm_round(&mut oa, &mut ob);
                olm_round(&mut ob, &mut oa);
            },
        ),
    );
    let alice = DeviceIdentity::generate(&mut rng);
    let bob = responder(&mut rng);
    let classical = classical_bundle(&bob);
    let olm_alice = Account::new();
    let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let public = x25519_dalek::PublicKey::from(&secret);
    let mut setup_pair = |tern: &mut dyn FnMut(&mut ChaCha20Rng)| {
        let olm_bob = std::cell::RefCell::new(None);
        paired(
            150,
            1,
            || *olm_bob.borrow_mut() = Some(olm_responder()),
            |_| tern(&mut rng),
            |_| olm_setup(&olm_alice, olm_bob.borrow_mut().take().unwrap()),
        )
    };
    report(
        "set-up with KEM vs Olm set-up",
        setup_pair(&mut |rng| tern_setup(&bob, &bob.bundle, &alice, rng)),
    );
    report(
        "set-up without KEM vs Olm set-up",
        setup_pair(&mut |rng| tern_setup(&bob, &classical, &alice, rng)),
    );
    report(
        "X25519 floor: tern's 10 DH vs Olm set-up",
        setup_pair(&mut |_| x25519_floor(&secret, &public)),
    );

    let mut sender = GroupSender::new([12; 16], &mut rng);
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution(&sender.distribution_message());
    let mut outbound = GroupSession::new(MegolmConfig::version_1());
    let mut inbound = InboundGroupSession::new(&outbound.session_key(), MegolmConfig::version_1());
    report(
        "group encrypt+decrypt vs Megolm",
        paired(
            300,
            2,
            || {},
            |_| {
                let message = SenderKeyMessage::decode(&sender.encrypt(&MESSAGE).unwrap()).unwrap();
                black_box(receiver.decrypt(&message).unwrap());
            },
            |_| {
                let message = outbound.encrypt(MESSAGE);
                black_box(inbound.decrypt(&message).unwrap());
            },
        ),
    );
}

/// A stored session record as the client's store hands it back for every message:
/// decoding it is on the path of each encrypt and decrypt outside this benchmark's
/// in-memory sessions.
fn record_decode(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let bob = responder(&mut rng);
    let store = Arc::new(InMemoryStore::new());
    store.add_signed_prekey(bob.signed.clone());
    store.add_one_time_prekeys([bob.one_time.clone()]);
    store.add_kem_prekey(bob.kem.clone());
    let manager = SessionManager::new(bob.identity.clone(), store.clone());
    let alice = DeviceIdentity::generate(&mut rng);
    let mut a = Session::initiate(&alice, &bob.bundle, true, &mut rng).unwrap();
    let address = DeviceAddress {
        user: [1; 16],
        device: 1,
    };
    manager
        .decrypt(address, &a.encrypt(&MESSAGE, &mut rng).unwrap())
        .unwrap();
    let reply = manager.encrypt(address, &MESSAGE, &mut rng).unwrap();
    a.decrypt(&RatchetMessage::decode(&reply).unwrap()).unwrap();
    let bytes = store.load_session(&address).unwrap().unwrap().to_bytes();
    c.bench_function("session_record_decode", |bench| {
        bench.iter(|| black_box(SessionRecord::from_bytes(&bytes).unwrap()))
    });
}

criterion_group!(
    benches,
    one_way,
    ping_pong,
    setup,
    group_messages,
    skipped,
    record_decode
);

fn main() {
    paired_ratios();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
