//! End-to-end: a real relay (in-process, real QUIC on 127.0.0.1) and several
//! `tern` processes with separate homes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Relay, texts};
use serde_json::Value;

#[test]
fn two_users_chat_and_read_history_and_search() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");

    let me = alice.json(&["whoami"]);
    assert_eq!(me[0]["user_name"], "alice");
    assert_eq!(me[0]["device_id"], 1);

    let added = alice.json(&["contact", "add", "bob"]);
    assert_eq!(added[0]["name"], "bob");
    assert_eq!(added[0]["verification"], "unverified");

    let sent = alice.json(&["send", "bob", "hello bob, this is alice"]);
    assert_eq!(sent[0]["status"], "sent");
    assert_eq!(sent[0]["outgoing"], true);

    // Bob never added alice: the first message makes her a contact.
    let got = bob.recv_until(1);
    assert_eq!(texts(&got), ["hello bob, this is alice"]);
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["chat"], "alice");
    assert!(bob.recv_texts().is_empty(), "recv prints a message once");

    bob.ok(&["send", "alice", "hi alice"]);
    // `history` fetches what is new first.
    let history = alice.json(&["history", "bob"]);
    assert_eq!(texts(&history), ["hello bob, this is alice", "hi alice"]);
    assert_eq!(history[0]["from"], "alice");
    assert_eq!(history[1]["from"], "bob");
    // `recv` still prints it once.
    let replies = alice.recv_until(1);
    assert_eq!(texts(&replies), ["hi alice"]);

    let human = alice.ok(&["history", "bob", "--limit", "1"]);
    assert!(human.contains("bob: hi alice"), "{human}");

    let hits = bob.json(&["search", "hello"]);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["type"], "hit");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("[hello]"));
    assert!(bob.json(&["search", "nothing-like-this"]).is_empty());
    let scoped = bob.json(&["search", "hi", "--chat", "alice"]);
    assert_eq!(scoped.len(), 1, "{scoped:?}");

    let contacts = bob.json(&["contact", "list"]);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["name"], "alice");
}

#[test]
fn an_offline_user_catches_up_in_order() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    let sent: Vec<String> = (1..=6).map(|i| format!("message {i}")).collect();
    for text in &sent {
        alice.ok(&["send", "bob", text]);
    }
    // A message from standard input, too.
    alice.tern_with_stdin(&["send", "bob", "-"], Some("from stdin\n"));
    let mut expected = sent.clone();
    expected.push("from stdin".into());
    let got = bob.recv_until(expected.len());
    assert_eq!(texts(&got), expected);
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn a_group_of_three() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    let carol = relay.user("carol");
    alice.ok(&["contact", "add", "bob"]);
    alice.ok(&["contact", "add", "carol"]);
    let group = alice.json(&[
        "group", "create", "trip", "--member", "bob", "--member", "carol",
    ]);
    let chat_id = group[0]["chat_id"].as_str().unwrap().to_owned();
    let listed = alice.json(&["group", "list"]);
    assert_eq!(listed[0]["name"], "trip");
    assert_eq!(listed[0]["members"].as_array().unwrap().len(), 3);

    alice.ok(&["send", "--group", "trip", "who brings the tent?"]);
    for member in [&bob, &carol] {
        let got = member.recv_until(1);
        assert_eq!(texts(&got), ["who brings the tent?"]);
        assert_eq!(got[0]["from"], "alice");
    }
    // Members address the group by its id until it has a name on their device.
    bob.ok(&["send", "--group", &chat_id[..8], "I do"]);
    for member in [&alice, &carol] {
        let got = member.recv_until(1);
        assert_eq!(texts(&got), ["I do"]);
        assert_eq!(got[0]["from"], "bob");
    }
    let history = carol.json(&["history", "--group", &chat_id]);
    assert_eq!(texts(&history), ["who brings the tent?", "I do"]);

    // Membership changes: Dave joins, Bob leaves.
    let dave = relay.user("dave");
    alice.ok(&["contact", "add", "dave"]);
    alice.ok(&["group", "add", "trip", "dave"]);
    alice.ok(&["group", "remove", "trip", "bob"]);
    let listed = alice.json(&["group", "list"]);
    let members: Vec<&str> = listed[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"dave") && !members.contains(&"bob"),
        "{members:?}"
    );
    alice.ok(&["send", "--group", "trip", "bob is not coming"]);
    assert_eq!(texts(&dave.recv_until(1)), ["bob is not coming"]);
    assert_eq!(texts(&carol.recv_until(1)), ["bob is not coming"]);
    assert!(
        bob.recv_texts().is_empty(),
        "a removed member gets nothing new"
    );
    let (code, _) = alice.fails(&["group", "add", "nowhere", "dave"]);
    assert_eq!(code, 5);

    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map.png");
    std::fs::write(&map, [0x89, b'P', b'N', b'G']).unwrap();
    alice.ok(&["send-file", "--group", "trip", map.to_str().unwrap()]);
    let got = dave.recv_until(1);
    assert_eq!(got[0]["attachments"][0]["file_name"], "map.png");
    assert_eq!(got[0]["attachments"][0]["content_type"], "image/png");
}

#[test]
fn a_renamed_group_shows_its_new_title_to_the_other_member() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    let group = alice.json(&["group", "create", "trip", "--member", "bob"]);
    let chat_id = group[0]["chat_id"].as_str().unwrap().to_owned();
    alice.ok(&["send", "--group", "trip", "hello"]);
    assert_eq!(texts(&bob.recv_until(1)), ["hello"]);
    let listed = bob.json(&["group", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "trip");

    let renamed = alice.json(&["group", "rename", "trip", "camping"]);
    assert_eq!(renamed[0]["name"], "camping");
    assert_eq!(renamed[0]["chat_id"], chat_id.as_str());
    // `group rename` returns once the relay has the new title, so Bob's
    // next fetch applies it without Alice sending anything else.
    bob.ok(&["recv"]);
    let listed = bob.json(&["group", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "camping");
    assert_eq!(listed[0]["chat_id"], chat_id.as_str());
    alice.ok(&["send", "--group", "camping", "new name, same trip"]);
    assert_eq!(texts(&bob.recv_until(1)), ["new name, same trip"]);
    bob.ok(&["send", "--group", "camping", "seen it"]);
    assert_eq!(texts(&alice.recv_until(1)), ["seen it"]);
}

#[test]
fn exit_codes_tell_what_went_wrong() {
    let mut relay = Relay::start();
    let alice = relay.user("alice");
    relay.user("bob");
    alice.ok(&["contact", "add", "bob"]);

    let (code, stderr) = alice.fails(&["send", "nobody", "hi"]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("unknown contact"), "{stderr}");
    let (code, _) = alice.fails(&["contact", "add", "nobody"]);
    assert_eq!(code, 5);
    let (code, _) = alice.fails(&["send"]);
    assert_eq!(code, 2);

    let wrong = std::process::Command::new(common::tern_bin())
        .arg("--home")
        .arg(alice.home())
        .arg("whoami")
        .env("TERN_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));

    let empty = tempfile::tempdir().unwrap();
    let none = std::process::Command::new(common::tern_bin())
        .arg("--home")
        .arg(empty.path())
        .args(["--json", "whoami"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&none.stderr).unwrap();
    assert_eq!(error["code"], 1);
    assert!(error["error"].as_str().unwrap().contains("tern init"));

    relay.stop();
    let (code, stderr) = alice.fails(&["send", "bob", "anyone there?", "--timeout", "1"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("queued"), "{stderr}");
    // The queued message is still in the history.
    let history = alice.json(&["history", "bob", "--offline"]);
    assert_eq!(texts(&history), ["anyone there?"]);
    assert_eq!(history[0]["status"], "pending");
}

#[test]
fn safety_numbers_match_and_verification_is_recorded() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);
    let theirs = bob.json(&["contact", "verify", "alice"]);
    let ours = alice.json(&["contact", "verify", "bob", "--mark-verified"]);
    assert_eq!(ours[0]["safety_number"].as_str().unwrap().len(), 60);
    assert_eq!(ours[0]["safety_number"], theirs[0]["safety_number"]);
    assert_eq!(ours[0]["verification"], "verified");
    assert_eq!(theirs[0]["verification"], "unverified");
    let human = alice.ok(&["contact", "verify", "bob"]);
    assert!(human.contains("bob is verified"), "{human}");
    assert!(
        human.contains('█') || human.contains('▀'),
        "a QR code is drawn"
    );
}

#[test]
fn help_documents_exit_codes() {
    let output = std::process::Command::new(common::tern_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("Exit codes"));
    for line in [
        "3  relay unreachable",
        "4  wrong passphrase",
        "6  a verified contact",
    ] {
        assert!(help.contains(line), "missing {line:?}");
    }
}

#[test]
fn a_changed_verified_identity_blocks_sending_until_accepted() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["contact", "verify", "bob", "--mark-verified"]);

    alice.forge_contact_key("bob");
    let output = alice.tern(&["contact", "add", "bob"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CHANGED"));

    let (code, stderr) = alice.fails(&["send", "bob", "are you still you?"]);
    assert_eq!(code, 6, "{stderr}");
    let shown = alice.ok(&["contact", "verify", "bob", "--no-qr"]);
    assert!(shown.contains("CHANGED"), "{shown}");

    alice.ok(&["contact", "verify", "bob", "--accept-change", "--no-qr"]);
    alice.ok(&["send", "bob", "accepted"]);
    assert_eq!(texts(&bob.recv_until(1)), ["accepted"]);
}

#[test]
fn recv_follow_streams_json_lines() {
    use std::io::BufRead;
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["send", "bob", "first"]);

    let mut follow = std::process::Command::new(common::tern_bin())
        .arg("--home")
        .arg(bob.home())
        .args(["--json", "recv", "--follow"])
        .env("TERN_PASSPHRASE", common::PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<Value>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(common::DEADLINE)
            .expect("a line from recv --follow")
    };
    assert_eq!(next()["text"], "first");
    alice.ok(&["send", "bob", "second"]);
    assert_eq!(next()["text"], "second");
    alice.ok(&["send", "bob", "third"]);
    let third = next();
    assert_eq!(third["text"], "third");
    assert_eq!(third["from"], "alice");
    follow.kill().unwrap();
    follow.wait().unwrap();
    // What --follow printed is not printed again.
    assert!(bob.recv_texts().is_empty());
}

#[test]
fn a_linked_second_device_sees_history_and_new_messages_and_can_be_removed() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);
    alice.ok(&["send", "bob", "before the laptop"]);
    assert_eq!(texts(&bob.recv_until(1)), ["before the laptop"]);
    bob.ok(&["send", "alice", "reply before the laptop"]);
    assert_eq!(texts(&alice.recv_until(1)), ["reply before the laptop"]);

    // `link new` runs on the existing device and prints the code first.
    let (mut link, mut lines, code) = link_new(&alice, &[]);

    // `link accept` runs on the new device, in a new home.
    let laptop = common::User {
        home: tempfile::tempdir().unwrap(),
        name: "alice's laptop".into(),
    };
    let created = laptop.json(&link_accept(&relay, &code));
    assert_eq!(created[0]["user_name"], "alice");
    assert_eq!(created[0]["device_id"], 2);
    let linked: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(linked["type"], "linked");
    assert_eq!(linked["device_id"], 2);
    assert!(link.wait().unwrap().success());

    // The history came with the link.
    let history = laptop.json(&["history", "bob", "--offline"]);
    assert_eq!(
        texts(&history),
        ["before the laptop", "reply before the laptop"]
    );
    // The laptop's home is taken, and the code was single use.
    let (_, error) = laptop.fails(&link_accept(&relay, &code));
    assert!(error.contains("already holds an account"), "{error}");
    let tablet = common::User {
        home: tempfile::tempdir().unwrap(),
        name: "alice's tablet".into(),
    };
    let mut again = link_accept(&relay, &code);
    again.extend(["--timeout", "5"]);
    let (_, error) = tablet.fails(&again);
    assert!(error.contains("expired"), "{error}");

    let devices = alice.json(&["device", "list"]);
    assert_eq!(devices.len(), 2);
    assert_eq!(
        devices.iter().filter(|d| d["this_device"] == true).count(),
        1
    );

    // Bob's message reaches both of Alice's devices.
    bob.ok(&["send", "alice", "to both of you"]);
    assert_eq!(texts(&alice.recv_until(1)), ["to both of you"]);
    // The laptop's first `recv` also shows the history it was linked with.
    assert_eq!(
        texts(&laptop.recv_until(3)),
        [
            "before the laptop",
            "reply before the laptop",
            "to both of you"
        ]
    );
    // What the laptop sends shows up on Bob's side and on Alice's phone.
    laptop.ok(&["send", "bob", "sent from the laptop"]);
    assert_eq!(texts(&bob.recv_until(1)), ["sent from the laptop"]);
    let mirrored = alice.recv_until(1);
    assert_eq!(texts(&mirrored), ["sent from the laptop"]);
    assert_eq!(mirrored[0]["outgoing"], true);
    assert_eq!(mirrored[0]["device"], 2);
    let history = laptop.json(&["history", "bob"]);
    assert_eq!(
        texts(&history),
        [
            "before the laptop",
            "reply before the laptop",
            "to both of you",
            "sent from the laptop"
        ]
    );

    alice.ok(&["device", "remove", "2"]);
    assert_eq!(alice.json(&["device", "list"]).len(), 1);
}

/// Starts `tern --json link new ARGS` on `user`'s device; returns the
/// process, the rest of its output and the link code it printed first.
fn link_new(
    user: &common::User,
    args: &[&str],
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    String,
) {
    use std::io::BufRead;
    let mut link = std::process::Command::new(common::tern_bin())
        .arg("--home")
        .arg(user.home())
        .args(["--json", "link", "new", "--timeout", "60"])
        .args(args)
        .env("TERN_PASSPHRASE", common::PASSPHRASE)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(link.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "link_code");
    let code = first["code"].as_str().unwrap().to_owned();
    (link, lines, code)
}

/// `tern link accept CODE` for a new device of a test relay (cheap store key).
fn link_accept<'a>(relay: &'a Relay, code: &'a str) -> Vec<&'a str> {
    vec![
        "link",
        "accept",
        code,
        "--relay",
        &relay.address,
        "--fingerprint",
        &relay.fingerprint,
        "--kdf-memory-mib",
        "1",
        "--kdf-iterations",
        "1",
    ]
}

#[test]
fn a_refused_expired_or_mistyped_link_code_fails_with_a_clear_error() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let laptop = common::User {
        home: tempfile::tempdir().unwrap(),
        name: "laptop".into(),
    };
    let accept = |code: &str| {
        let mut args = link_accept(&relay, code);
        args.extend(["--timeout", "5"]);
        laptop.fails(&args)
    };
    let (code, error) = accept("tern-link:2:00");
    assert_eq!(code, 2, "{error}");
    assert!(error.contains("link code"), "{error}");

    // `link new` gives up at once: its code expires unused.
    let offer = alice.tern(&["--json", "link", "new", "--timeout", "0"]);
    assert!(!offer.status.success());
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&offer.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let (code, error) = accept(first["code"].as_str().unwrap());
    assert_eq!(code, 1, "{error}");
    assert!(error.contains("expired"), "{error}");

    // With --confirm, answering no refuses the device.
    let (mut link, _, code) = link_new(&alice, &["--confirm"]);
    let mut stdin = link.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"n\n").unwrap();
    let (exit, error) = accept(&code);
    assert_eq!(exit, 1, "{error}");
    assert!(error.contains("refused the link request"), "{error}");
    assert_eq!(link.wait().unwrap().code(), Some(2));
    assert!(laptop.fails(&["whoami"]).1.contains("no account"));
    assert_eq!(alice.json(&["device", "list"]).len(), 1);
}

#[test]
fn a_file_round_trip_keeps_every_byte() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();

    let dir = tempfile::tempdir().unwrap();
    let original: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.path().join("notes.bin");
    std::fs::write(&path, &original).unwrap();
    let sent = alice.json(&["send-file", "bob", path.to_str().unwrap()]);
    assert_eq!(sent[0]["status"], "sent");
    assert_eq!(sent[0]["attachments"][0]["file_name"], "notes.bin");

    let got = bob.recv_until(1);
    let file = &got[0]["attachments"][0];
    assert_eq!(file["file_name"], "notes.bin");
    assert_eq!(file["size"], 300_000);
    assert_eq!(file["downloaded"], false);
    let id = got[0]["id"].as_i64().unwrap().to_string();

    let out = dir.path().join("received.bin");
    let saved = bob.json(&["download", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(saved[0]["size"], 300_000);
    assert!(
        std::fs::read(&out).unwrap() == original,
        "the downloaded file differs"
    );
    let (code, _) = bob.fails(&["download", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "an existing file is not overwritten");
    let (code, _) = bob.fails(&["download", "999999"]);
    assert_eq!(code, 5);
    let history = bob.json(&["history", "alice"]);
    assert_eq!(history[0]["attachments"][0]["downloaded"], true);
}
