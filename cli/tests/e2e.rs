//! End-to-end: a real relay (in-process, real QUIC on 127.0.0.1) and several
//! `tern` processes with separate homes.
//!
//! Every `--json` record these tests read goes through [`Records`], which
//! checks it against the record tables of `docs/cli.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_doc;
mod common;

use std::sync::OnceLock;

use cli_doc::CliDoc;
use common::{Relay, User, texts};
use serde_json::Value;

/// `docs/cli.md`, parsed once.
fn doc() -> &'static CliDoc {
    static DOC: OnceLock<CliDoc> = OnceLock::new();
    DOC.get_or_init(|| CliDoc::load().unwrap_or_else(|e| panic!("{e}")))
}

/// Fails the test unless every record has exactly the fields `docs/cli.md`
/// documents for its `type`, each of the documented JSON type.
fn documented(records: &[Value]) {
    for record in records {
        if let Err(e) = doc().check(record) {
            panic!("docs/cli.md disagrees with `tern`: {e}\nrecord: {record}");
        }
    }
}

/// Parses one line of `--json` output and checks it against `docs/cli.md`.
fn record(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    documented(std::slice::from_ref(&value));
    value
}

/// The last record on a `--json` command's stderr (lines before it may be
/// other records, or diagnostics when `TERN_LOG` is set).
fn stderr_record(output: &std::process::Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with('{'));
    record(line.unwrap_or_else(|| panic!("no record on stderr: {stderr}")))
}

/// `--json` commands whose records are checked against `docs/cli.md`.
trait Records {
    /// Runs `tern --json ARGS`, which must succeed; its records.
    fn records(&self, args: &[&str]) -> Vec<Value>;
    /// Runs `tern --json recv` until `count` messages arrived in total.
    fn recv_records(&self, count: usize) -> Vec<Value>;
    /// The texts of what one `tern --json recv` prints now.
    fn received_texts(&self) -> Vec<String>;
    /// Runs `tern --json ARGS`, which must fail; the exit code and the
    /// `error` record, the last line on stderr.
    fn json_error(&self, args: &[&str]) -> (i32, Value);
}

impl Records for User {
    fn records(&self, args: &[&str]) -> Vec<Value> {
        let records = self.json(args);
        documented(&records);
        records
    }

    fn recv_records(&self, count: usize) -> Vec<Value> {
        let records = self.recv_until(count);
        documented(&records);
        records
    }

    fn received_texts(&self) -> Vec<String> {
        texts(&self.records(&["recv"]))
    }

    fn json_error(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.tern(&all);
        assert!(
            !output.status.success(),
            "tern {all:?} unexpectedly succeeded"
        );
        let code = output.status.code().unwrap();
        let error = stderr_record(&output);
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        (code, error)
    }
}

#[test]
fn two_users_chat_and_read_history_and_search() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");

    let me = alice.records(&["whoami"]);
    assert_eq!(me[0]["user_name"], "alice");
    assert_eq!(me[0]["device_id"], 1);

    let added = alice.records(&["contact", "add", "bob"]);
    assert_eq!(added[0]["name"], "bob");
    assert_eq!(added[0]["verification"], "unverified");

    let sent = alice.records(&["send", "bob", "hello bob, this is alice"]);
    assert_eq!(sent[0]["status"], "sent");
    assert_eq!(sent[0]["outgoing"], true);
    assert!(sent[0]["seq"].is_u64(), "the relay stored it: {sent:?}");

    // Bob never added alice: the first message makes her a contact.
    let got = bob.recv_records(1);
    assert_eq!(texts(&got), ["hello bob, this is alice"]);
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["chat"], "alice");
    assert!(
        bob.received_texts().is_empty(),
        "recv prints a message once"
    );

    bob.ok(&["send", "alice", "hi alice"]);
    // `history` fetches what is new first.
    let history = alice.records(&["history", "bob"]);
    assert_eq!(texts(&history), ["hello bob, this is alice", "hi alice"]);
    assert_eq!(history[0]["from"], "alice");
    assert_eq!(history[1]["from"], "bob");
    // `recv` still prints it once.
    let replies = alice.recv_records(1);
    assert_eq!(texts(&replies), ["hi alice"]);

    let human = alice.ok(&["history", "bob", "--limit", "1"]);
    assert!(human.contains("bob: hi alice"), "{human}");

    let hits = bob.records(&["search", "hello"]);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["type"], "hit");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("[hello]"));
    assert!(bob.records(&["search", "nothing-like-this"]).is_empty());
    let scoped = bob.records(&["search", "hi", "--chat", "alice"]);
    assert_eq!(scoped.len(), 1, "{scoped:?}");

    let contacts = bob.records(&["contact", "list"]);
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
    let got = bob.recv_records(expected.len());
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
    let group = alice.records(&[
        "group", "create", "trip", "--member", "bob", "--member", "carol",
    ]);
    let chat_id = group[0]["chat_id"].as_str().unwrap().to_owned();
    let listed = alice.records(&["group", "list"]);
    assert_eq!(listed[0]["name"], "trip");
    assert_eq!(listed[0]["members"].as_array().unwrap().len(), 3);

    alice.ok(&["send", "--group", "trip", "who brings the tent?"]);
    for member in [&bob, &carol] {
        let got = member.recv_records(1);
        assert_eq!(texts(&got), ["who brings the tent?"]);
        assert_eq!(got[0]["from"], "alice");
    }
    // Members address the group by its id until it has a name on their device.
    bob.ok(&["send", "--group", &chat_id[..8], "I do"]);
    for member in [&alice, &carol] {
        let got = member.recv_records(1);
        assert_eq!(texts(&got), ["I do"]);
        assert_eq!(got[0]["from"], "bob");
    }
    let history = carol.records(&["history", "--group", &chat_id]);
    assert_eq!(texts(&history), ["who brings the tent?", "I do"]);

    // Membership changes: Dave joins, Bob leaves.
    let dave = relay.user("dave");
    alice.ok(&["contact", "add", "dave"]);
    alice.ok(&["group", "add", "trip", "dave"]);
    alice.ok(&["group", "remove", "trip", "bob"]);
    let listed = alice.records(&["group", "list"]);
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
    assert_eq!(texts(&dave.recv_records(1)), ["bob is not coming"]);
    assert_eq!(texts(&carol.recv_records(1)), ["bob is not coming"]);
    assert!(
        bob.received_texts().is_empty(),
        "a removed member gets nothing new"
    );
    let (code, error) = alice.json_error(&["group", "add", "nowhere", "dave"]);
    assert_eq!(code, 5);
    assert!(error["error"].as_str().unwrap().contains("unknown group"));

    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map.png");
    std::fs::write(&map, [0x89, b'P', b'N', b'G']).unwrap();
    alice.ok(&["send-file", "--group", "trip", map.to_str().unwrap()]);
    let got = dave.recv_records(1);
    assert_eq!(got[0]["attachments"][0]["file_name"], "map.png");
    assert_eq!(got[0]["attachments"][0]["content_type"], "image/png");
}

#[test]
fn a_renamed_group_shows_its_new_title_to_the_other_member() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    let group = alice.records(&["group", "create", "trip", "--member", "bob"]);
    let chat_id = group[0]["chat_id"].as_str().unwrap().to_owned();
    alice.ok(&["send", "--group", "trip", "hello"]);
    assert_eq!(texts(&bob.recv_records(1)), ["hello"]);
    let listed = bob.records(&["group", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "trip");

    let renamed = alice.records(&["group", "rename", "trip", "camping"]);
    assert_eq!(renamed[0]["name"], "camping");
    assert_eq!(renamed[0]["chat_id"], chat_id.as_str());
    // `group rename` returns once the relay has the new title, so Bob's
    // next fetch applies it without Alice sending anything else, and tells
    // him who renamed which group (a `warning` record on stderr).
    let recv = bob.tern(&["--json", "recv"]);
    assert!(recv.status.success());
    let stderr = String::from_utf8(recv.stderr).unwrap();
    let warning: serde_json::Value = serde_json::from_str(stderr.lines().next().unwrap()).unwrap();
    assert_eq!(warning["type"], "warning");
    assert_eq!(
        warning["warning"],
        format!(
            "alice renamed a group to #camping (group {})",
            &chat_id[..8]
        )
    );
    let listed = bob.records(&["group", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "camping");
    assert_eq!(listed[0]["chat_id"], chat_id.as_str());
    alice.ok(&["send", "--group", "camping", "new name, same trip"]);
    assert_eq!(texts(&bob.recv_records(1)), ["new name, same trip"]);
    bob.ok(&["send", "--group", "camping", "seen it"]);
    assert_eq!(texts(&alice.recv_records(1)), ["seen it"]);
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
    let (code, _) = alice.json_error(&["contact", "add", "nobody"]);
    assert_eq!(code, 5);
    let (code, _) = alice.fails(&["send"]);
    assert_eq!(code, 2);
    // Bad arguments are an `error` record too with --json.
    let (code, error) = alice.json_error(&["send", "--no-such-option"]);
    assert_eq!(code, 2);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("--no-such-option")
    );

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
    let error = stderr_record(&none);
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], 1);
    assert!(error["error"].as_str().unwrap().contains("tern init"));

    relay.stop();
    let (code, error) = alice.json_error(&["send", "bob", "anyone there?", "--timeout", "1"]);
    assert_eq!(code, 3);
    assert!(
        error["error"].as_str().unwrap().contains("queued"),
        "{error}"
    );
    // `history` falls back to the local history, with a warning.
    let output = alice.tern(&["--json", "history", "bob", "--timeout", "1"]);
    assert!(output.status.success());
    assert_eq!(stderr_record(&output)["type"], "warning");
    // `--no-wait` does not need the relay.
    let queued = alice.records(&["send", "bob", "--no-wait", "later"]);
    assert_eq!(queued[0]["status"], "pending");
    assert_eq!(queued[0]["seq"], Value::Null);
    // The queued messages are still in the history.
    let history = alice.records(&["history", "bob", "--offline"]);
    assert_eq!(texts(&history), ["anyone there?", "later"]);
    assert_eq!(history[0]["status"], "pending");
}

#[test]
fn safety_numbers_match_and_verification_is_recorded() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);
    let theirs = bob.records(&["contact", "verify", "alice"]);
    let ours = alice.records(&["contact", "verify", "bob", "--mark-verified"]);
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
fn help_lists_the_documented_exit_codes() {
    let output = std::process::Command::new(common::tern_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let mut lines = help.lines().skip_while(|l| !l.starts_with("Exit codes"));
    assert!(lines.next().unwrap().contains("docs/cli.md"), "{help}");
    let listed: Vec<(u8, &str)> = lines
        .map_while(|l| {
            let (code, meaning) = l.trim().split_once("  ")?;
            Some((code.parse().ok()?, meaning))
        })
        .collect();
    let documented = doc().exit_codes();
    assert_eq!(listed.len(), documented.len(), "{help}");
    for ((code, meaning), (doc_code, doc_meaning)) in listed.iter().zip(documented) {
        assert_eq!(code, doc_code);
        assert!(
            doc_meaning.starts_with(meaning),
            "--help says {code} is {meaning:?}, docs/cli.md {doc_meaning:?}"
        );
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
    assert!(String::from_utf8_lossy(&output.stderr).contains("warning: bob's identity CHANGED"));
    // With --json, the warning is a record on stderr.
    let output = alice.tern(&["--json", "contact", "add", "bob"]);
    assert!(output.status.success());
    let warning = stderr_record(&output);
    assert!(warning["warning"].as_str().unwrap().contains("CHANGED"));
    let contact = record(String::from_utf8_lossy(&output.stdout).trim());
    assert_eq!(contact["verification"], "identity-changed");

    let (code, stderr) = alice.fails(&["send", "bob", "are you still you?"]);
    assert_eq!(code, 6, "{stderr}");
    let shown = alice.ok(&["contact", "verify", "bob", "--no-qr"]);
    assert!(shown.contains("CHANGED"), "{shown}");

    alice.ok(&["contact", "verify", "bob", "--accept-change", "--no-qr"]);
    alice.ok(&["send", "bob", "accepted"]);
    assert_eq!(texts(&bob.recv_records(1)), ["accepted"]);
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
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        record(
            &lines
                .recv_timeout(common::DEADLINE)
                .expect("a line from recv --follow"),
        )
    };
    assert_eq!(next()["text"], "first");
    alice.ok(&["send", "bob", "second"]);
    assert_eq!(next()["text"], "second");
    alice.ok(&["send", "bob", "third"]);
    let third = next();
    assert_eq!(third["text"], "third");
    assert_eq!(third["from"], "alice");
    // Ctrl+C ends it (once what it printed is recorded in the mark; a
    // SIGKILL could land between printing and recording).
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(follow.wait().unwrap().success());
    // What --follow printed is not printed again.
    assert!(bob.received_texts().is_empty());
}

#[test]
fn a_linked_second_device_sees_history_and_new_messages_and_can_be_removed() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);
    alice.ok(&["send", "bob", "before the laptop"]);
    assert_eq!(texts(&bob.recv_records(1)), ["before the laptop"]);
    bob.ok(&["send", "alice", "reply before the laptop"]);
    assert_eq!(texts(&alice.recv_records(1)), ["reply before the laptop"]);

    // `link new` runs on the existing device and prints the code first.
    let (mut link, mut lines, code) = link_new(&alice, &[]);

    // `link accept` runs on the new device, in a new home.
    let laptop = common::User {
        home: tempfile::tempdir().unwrap(),
        name: "alice's laptop".into(),
    };
    let created = laptop.records(&link_accept(&relay, &code));
    assert_eq!(created[0]["user_name"], "alice");
    assert_eq!(created[0]["device_id"], 2);
    let linked = record(&lines.next().unwrap().unwrap());
    assert_eq!(linked["type"], "linked");
    assert_eq!(linked["device_id"], 2);
    assert!(link.wait().unwrap().success());

    // The history came with the link.
    let history = laptop.records(&["history", "bob", "--offline"]);
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

    let devices = alice.records(&["device", "list"]);
    assert_eq!(devices.len(), 2);
    assert_eq!(
        devices.iter().filter(|d| d["this_device"] == true).count(),
        1
    );

    // Bob's message reaches both of Alice's devices.
    bob.ok(&["send", "alice", "to both of you"]);
    assert_eq!(texts(&alice.recv_records(1)), ["to both of you"]);
    // The laptop's first `recv` also shows the history it was linked with.
    assert_eq!(
        texts(&laptop.recv_records(3)),
        [
            "before the laptop",
            "reply before the laptop",
            "to both of you"
        ]
    );
    // What the laptop sends shows up on Bob's side and on Alice's phone.
    laptop.ok(&["send", "bob", "sent from the laptop"]);
    assert_eq!(texts(&bob.recv_records(1)), ["sent from the laptop"]);
    let mirrored = alice.recv_records(1);
    assert_eq!(texts(&mirrored), ["sent from the laptop"]);
    assert_eq!(mirrored[0]["outgoing"], true);
    assert_eq!(mirrored[0]["device"], 2);
    let history = laptop.records(&["history", "bob"]);
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
    assert_eq!(alice.records(&["device", "list"]).len(), 1);
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
    let first = record(&lines.next().unwrap().unwrap());
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
    assert_eq!(offer.status.code(), Some(1));
    let first = record(
        String::from_utf8_lossy(&offer.stdout)
            .lines()
            .next()
            .unwrap(),
    );
    assert_eq!(stderr_record(&offer)["code"], 1);
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
    assert_eq!(alice.records(&["device", "list"]).len(), 1);
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
    let sent = alice.records(&["send-file", "bob", path.to_str().unwrap()]);
    assert_eq!(sent[0]["status"], "sent");
    assert_eq!(sent[0]["attachments"][0]["file_name"], "notes.bin");

    let got = bob.recv_records(1);
    let file = &got[0]["attachments"][0];
    assert_eq!(file["file_name"], "notes.bin");
    assert_eq!(file["size"], 300_000);
    assert_eq!(file["downloaded"], false);
    let id = got[0]["id"].as_i64().unwrap().to_string();

    let out = dir.path().join("received.bin");
    let saved = bob.records(&["download", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(saved[0]["size"], 300_000);
    assert!(
        std::fs::read(&out).unwrap() == original,
        "the downloaded file differs"
    );
    let (code, _) = bob.fails(&["download", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "an existing file is not overwritten");
    let (code, _) = bob.fails(&["download", "999999"]);
    assert_eq!(code, 5);
    let history = bob.records(&["history", "alice"]);
    assert_eq!(history[0]["attachments"][0]["downloaded"], true);
}

#[test]
fn groups_take_registered_users_who_are_not_contacts_yet() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    let carol = relay.user("carol");
    let contact_names = |user: &User| -> Vec<String> {
        let contacts = user.records(&["contact", "list"]);
        contacts
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(contact_names(&alice).is_empty());

    // `group create` looks Bob up on the relay and adds him as a contact.
    let group = alice.records(&["group", "create", "hike", "--member", "bob"]);
    assert_eq!(group.len(), 1, "{group:?}");
    assert_eq!(group[0]["type"], "group");
    assert_eq!(group[0]["name"], "hike");
    let mut members: Vec<&str> = group[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alice", "bob"]);
    assert_eq!(contact_names(&alice), ["bob"]);

    // So does `group add` for Carol.
    let added = alice.records(&["group", "add", "hike", "carol"]);
    assert_eq!(added[0]["type"], "membership");
    assert_eq!(added[0]["user"], "carol");
    assert_eq!(added[0]["change"], "added");
    let mut contacts = contact_names(&alice);
    contacts.sort_unstable();
    assert_eq!(contacts, ["bob", "carol"]);

    alice.ok(&["send", "--group", "hike", "boots on at eight"]);
    for member in [&bob, &carol] {
        assert_eq!(texts(&member.recv_records(1)), ["boots on at eight"]);
    }

    // A name nobody registered is still unknown, and nothing is created.
    let (code, error) = alice.json_error(&["group", "add", "hike", "nobody"]);
    assert_eq!(code, 5, "{error}");
    let (code, _) = alice.json_error(&["group", "create", "ghosts", "--member", "nobody"]);
    assert_eq!(code, 5);
    assert_eq!(alice.records(&["group", "list"]).len(), 1);
}

/// The sorted strings of a record's array field.
fn sorted_names(record: &Value, field: &str) -> Vec<String> {
    let mut names: Vec<String> = record[field]
        .as_array()
        .unwrap_or_else(|| panic!("no array `{field}` in {record}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn only_group_admins_change_others_and_promote() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    let carol = relay.user("carol");
    alice.records(&[
        "group", "create", "trip", "--member", "bob", "--member", "carol",
    ]);
    let listed = alice.records(&["group", "list"]);
    assert_eq!(sorted_names(&listed[0], "admins"), ["alice"], "the creator");
    let text = alice.ok(&["group", "list"]);
    assert!(text.contains("alice (admin)"), "{text}");
    assert!(!text.contains("bob (admin)"), "{text}");
    // Bob and Carol learn the group (and its name) from the relay.
    bob.ok(&["recv"]);
    carol.ok(&["recv"]);
    let listed = bob.records(&["group", "list"]);
    assert_eq!(listed[0]["name"], "trip");
    assert_eq!(sorted_names(&listed[0], "admins"), ["alice"]);

    // A member who is not an admin may not remove others or promote.
    bob.ok(&["contact", "add", "carol"]);
    let (code, error) = bob.json_error(&["group", "remove", "trip", "carol"]);
    assert_eq!(code, 1, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("only group admins"),
        "{error}"
    );
    let (code, _) = carol.json_error(&["group", "promote", "trip", "carol"]);
    assert_eq!(code, 1);
    // Carol is still a member.
    alice.ok(&["send", "--group", "trip", "still three of us"]);
    assert_eq!(texts(&carol.recv_records(1)), ["still three of us"]);
    let listed = alice.records(&["group", "list"]);
    assert_eq!(
        sorted_names(&listed[0], "members"),
        ["alice", "bob", "carol"]
    );

    // Alice makes Bob an admin; now he may remove Carol.
    let promoted = alice.records(&["group", "promote", "trip", "bob"]);
    assert_eq!(promoted[0]["type"], "membership");
    assert_eq!(promoted[0]["user"], "bob");
    assert_eq!(promoted[0]["change"], "promoted");
    assert_eq!(promoted[0]["group"], "#trip");
    let removed = bob.records(&["group", "remove", "trip", "carol"]);
    assert_eq!(removed[0]["change"], "removed");
    for user in [&alice, &bob] {
        user.ok(&["recv"]);
        let listed = user.records(&["group", "list"]);
        assert_eq!(sorted_names(&listed[0], "admins"), ["alice", "bob"]);
        assert_eq!(sorted_names(&listed[0], "members"), ["alice", "bob"]);
    }
    let text = bob.ok(&["group", "list"]);
    assert!(
        text.contains("alice (admin)") && text.contains("bob (admin)"),
        "{text}"
    );

    // Any member may leave: Alice removes herself.
    let left = alice.ok(&["group", "remove", "trip", "alice"]);
    assert_eq!(left.trim(), "removed alice from #trip");
    bob.ok(&["recv"]);
    let listed = bob.records(&["group", "list"]);
    assert_eq!(sorted_names(&listed[0], "members"), ["bob"]);
    assert_eq!(sorted_names(&listed[0], "admins"), ["bob"]);
}

#[test]
fn a_peer_cannot_write_control_sequences_to_the_terminal() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    alice.ok(&["contact", "add", "bob"]);
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{1b}[0m\n[2026-12-03 10:00] carol: fake";
    alice.ok(&["send", "bob", hostile]);

    // JSON carries the exact text.
    let got = bob.recv_records(1);
    assert_eq!(texts(&got), [hostile]);

    // Text output shows the escapes, and the second line cannot pass for a
    // message of its own.
    for human in [
        bob.ok(&["history", "alice", "--offline"]),
        bob.ok(&["search", "fake"]),
    ] {
        assert!(
            !human.contains('\u{1b}') && !human.contains('\u{7}'),
            "{human:?}"
        );
        assert!(
            human.contains("\\x1b]0;pwned\\x07\\x1b[31mred"),
            "{human:?}"
        );
        assert!(
            human
                .lines()
                .all(|line| !line.starts_with("[2026-12-03 10:00] carol")),
            "{human:?}"
        );
    }
    let history = bob.ok(&["history", "alice", "--offline"]);
    assert!(
        history.contains("\n    [2026-12-03 10:00] carol: fake"),
        "continuation lines are indented: {history:?}"
    );
}

#[test]
fn a_group_name_that_matches_two_groups_addresses_neither() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    let carol = relay.user("carol");
    let family = alice.records(&["group", "create", "family", "--member", "bob"]);
    let family_id = family[0]["chat_id"].as_str().unwrap().to_owned();
    let team = carol.records(&["group", "create", "team", "--member", "alice"]);
    let team_id = team[0]["chat_id"].as_str().unwrap().to_owned();
    // Carol, a member of the other group, renames it to "family".
    carol.ok(&["group", "rename", "team", "family"]);
    alice.ok(&["recv"]);

    let (code, error) = alice.json_error(&["send", "--group", "family", "private"]);
    assert_eq!(code, 2, "{error}");
    let text = error["error"].as_str().unwrap();
    for id in [&family_id, &team_id] {
        assert!(text.contains(&format!("#{}", &id[..8])), "{text}");
    }
    assert!(text.contains("carol"), "members are listed: {text}");
    assert!(bob.received_texts().is_empty(), "nothing was sent");

    // The id prefix still addresses exactly one of them.
    let prefix = format!("#{}", &family_id[..8]);
    alice.ok(&["send", "--group", &prefix, "to the family"]);
    assert_eq!(texts(&bob.recv_records(1)), ["to the family"]);
}

#[test]
fn recv_sends_its_receipts_before_it_exits() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["send", "bob", "did you get this?"]);
    let shown = bob.ok(&["recv", "--mark-read"]);
    assert!(shown.contains("did you get this?"), "{shown}");
    // Bob runs nothing else: his receipts left with `recv` itself.
    let history = alice.records(&["history", "bob"]);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["status"], "read", "{history:?}");
}

#[test]
fn a_message_too_large_for_the_relay_fails_for_good_and_is_not_queued() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["contact", "add", "bob"]);
    // Under the 64 KiB text limit, over the relay's 64 KiB per ciphertext.
    let text = "x".repeat(65_000);
    let output = alice.tern_with_stdin(&["--json", "send", "bob", "-"], Some(&text));
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let error = stderr_record(&output);
    assert_eq!(error["code"], 7, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("too large"),
        "{error}"
    );

    // Nothing is left queued: the next command sends the next message only.
    alice.ok(&["send", "bob", "small"]);
    assert_eq!(texts(&bob.recv_records(1)), ["small"]);
    assert!(bob.received_texts().is_empty());
}
