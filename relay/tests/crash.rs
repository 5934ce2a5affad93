//! The real binary is killed with SIGKILL under load and restarted: every
//! acknowledged message is delivered afterwards, and none twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, RelayProcess, guard, random};

const SENDERS: usize = 8;
const ACKED_BEFORE_KILL: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_message() {
    let mut relay = RelayProcess::start(env!("CARGO_BIN_EXE_tern-relay"));
    let at = &relay.address();
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let a = RawClient::register(at, &alice).await.unwrap();
    drop(RawClient::register(at, &bob).await.unwrap());
    let chat = direct_chat(&a, &bob).await;

    let acked: Arc<Mutex<HashMap<[u8; 16], u64>>> = Arc::default();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let conn = a.conn.clone();
        let acked = acked.clone();
        let bob_id = bob.user_id;
        senders.push(tokio::spawn(async move {
            loop {
                let cmid: [u8; 16] = random();
                let req = send_to(chat, cmid, &[(&bob_id, 1, &cmid)], b"");
                match try_request(&conn, req).await {
                    Some(Ok(kind)) => {
                        acked.lock().unwrap().insert(cmid, ack(kind).seq);
                    }
                    Some(Err(e)) => panic!("send refused: {e:?}"),
                    None => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < ACKED_BEFORE_KILL {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    relay.kill();
    // Sends in flight at the kill are unacknowledged; the client gives up on
    // this connection instead of waiting for its idle timeout.
    a.conn.close(0u32.into(), b"relay died");
    for s in senders {
        guard(s).await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    relay.restart();
    let at = &relay.address();
    let b = RawClient::login(at, &bob, 1).await.unwrap();
    let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = batch(b.ok(sync_req(&[(chat, after)])).await);
        for e in &page.entries {
            assert_eq!(e.seq, after + 1, "the log has no gaps");
            after = e.seq;
            if e.kind == EntryKind::Message as i32 {
                let cmid: [u8; 16] = e.client_message_id[..].try_into().unwrap();
                assert_eq!(&e.ciphertext[..], &cmid);
                assert!(seen.insert(cmid, e.seq).is_none(), "delivered twice");
            }
        }
        if !page.more {
            break;
        }
    }
    for (cmid, seq) in &acked {
        assert_eq!(
            seen.get(cmid),
            Some(seq),
            "an acknowledged message was lost"
        );
    }

    // The sender's outbox retries after the crash: acked ids are not stored again.
    let a = RawClient::login(at, &alice, 1).await.unwrap();
    for (cmid, seq) in acked.iter().take(20) {
        let again = ack(a
            .ok(send_to(chat, *cmid, &[(&bob.user_id, 1, cmid)], b""))
            .await);
        assert!(again.duplicate);
        assert_eq!(again.seq, *seq);
    }
}
