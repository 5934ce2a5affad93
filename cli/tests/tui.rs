//! `tern chat` end-to-end: the interactive client in tmux sessions (keys in,
//! screen out) against an in-process relay, with `tern` processes on the
//! other side. Skipped, with a message, where tmux is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmux::Tmux;
use common::{Relay, texts};

#[test]
fn chat_tui_sends_and_shows_the_reply() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["send", "bob", "before the tui"]);
    bob.recv_until(1);

    let Some(tmux) = Tmux::chat(&alice, "reply") else {
        return;
    };
    tmux.wait_for("before the tui");

    tmux.keys("hello from the tui");
    tmux.key("Enter");
    let got = bob.recv_until(1);
    assert_eq!(texts(&got), ["hello from the tui"]);

    bob.ok(&["send", "alice", "reply from bob"]);
    let screen = tmux.wait_for("reply from bob");
    assert!(screen.contains("hello from the tui"), "{screen}");
    assert!(
        screen.contains("ctrl+q quit"),
        "the help bar is shown:\n{screen}"
    );

    // Search across chats, then back to the conversation.
    tmux.key("C-g");
    tmux.wait_for("search all chats");
    tmux.keys("reply");
    tmux.key("Enter");
    let results = tmux.wait_for("search: 1 hits");
    assert!(results.contains("[reply] from bob"), "{results}");
    tmux.key("Escape");
    tmux.wait_for("┌ bob ");

    // Files both ways: `/file PATH` sends, `/download DIR` saves the newest.
    let dir = tempfile::tempdir().unwrap();
    let outgoing = dir.path().join("from-alice.txt");
    std::fs::write(&outgoing, "alice's notes").unwrap();
    tmux.run(&[
        "send-keys",
        "-t",
        "tern",
        "-l",
        &format!("/file {}", outgoing.display()),
    ]);
    tmux.key("Enter");
    let got = bob.recv_until(1);
    assert_eq!(got[0]["attachments"][0]["file_name"], "from-alice.txt");
    let incoming = dir.path().join("from-bob.txt");
    std::fs::write(&incoming, "bob's photo").unwrap();
    bob.ok(&["send-file", "alice", incoming.to_str().unwrap()]);
    tmux.wait_for("📎 from-bob.txt");
    let downloads = tempfile::tempdir().unwrap();
    tmux.run(&[
        "send-keys",
        "-t",
        "tern",
        "-l",
        &format!("/download {}", downloads.path().display()),
    ]);
    tmux.key("Enter");
    tmux.wait_for("saved");
    let saved = std::fs::read_to_string(downloads.path().join("from-bob.txt")).unwrap();
    assert_eq!(saved, "bob's photo");

    tmux.key("C-q");
    common::eventually("tern chat to exit", || {
        let alive = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&tmux.socket)
            .args(["has-session", "-t", "tern"])
            .output()
            .is_ok_and(|o| o.status.success());
        (!alive).then_some(())
    });
}

#[test]
fn two_chat_tuis_show_typing_presence_and_read_marks() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    // Presence is shared between users who have a chat on the relay.
    alice.ok(&["send", "bob", "hi"]);
    bob.recv_until(1);
    let Some(alice_tui) = Tmux::chat(&alice, "alice") else {
        return;
    };
    let Some(bob_tui) = Tmux::chat(&bob, "bob") else {
        return;
    };
    bob_tui.wait_for("● alice");
    alice_tui.wait_for("● bob");

    alice_tui.keys("are you th");
    bob_tui.wait_for("alice typing…");
    alice_tui.keys("ere?");
    alice_tui.key("Enter");
    bob_tui.wait_for("alice: are you there?");
    // Bob has the chat open, so it is read at once.
    alice_tui.wait_for("are you there? ✓✓ read");

    // Multi-line input.
    bob_tui.keys("line one");
    bob_tui.key("M-Enter");
    bob_tui.keys("line two");
    bob_tui.key("Enter");
    let screen = alice_tui.wait_for("line two");
    assert!(screen.contains("bob: line one"), "{screen}");
}

#[test]
fn chat_tui_shows_a_loud_banner_when_an_identity_changes() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    alice.ok(&["send", "bob", "hi"]);
    bob.recv_until(1);
    alice.ok(&["contact", "verify", "bob", "--mark-verified"]);
    alice.forge_contact_key("bob");
    let Some(tui) = Tmux::chat(&alice, "banner") else {
        return;
    };
    tui.keys("still you?");
    tui.key("Enter");
    tui.wait_for("IDENTITY CHANGED");
    tui.key("Escape");
    common::eventually("the banner to go", || {
        (!tui.screen().contains("IDENTITY CHANGED")).then_some(())
    });
}

#[test]
fn chat_tui_counts_unread_messages_across_restarts() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    let carol = relay.user("carol");
    alice.ok(&["contact", "add", "bob"]);
    carol.ok(&["contact", "add", "alice"]);
    carol.ok(&["send", "alice", "one"]);
    carol.ok(&["send", "alice", "two"]);
    drop(bob);

    let Some(tui) = Tmux::chat(&alice, "unread1") else {
        return;
    };
    // Bob's chat is open (first by name); Carol's shows two unread.
    tui.wait_for("carol (2)");
    tui.key("C-n");
    tui.wait_for("carol: two");
    assert!(!tui.screen().contains("carol (2)"));
    tui.key("C-q");
    drop(tui);

    let Some(again) = Tmux::chat(&alice, "unread2") else {
        return;
    };
    again.wait_for("○ carol");
    assert!(!again.screen().contains("(2)"), "{}", again.screen());
}

#[test]
fn the_passphrase_is_asked_on_the_terminal_without_tern_passphrase() {
    let relay = Relay::start();
    let alice = relay.user("alice");
    let run = |tag: &str| {
        let command = format!(
            "env -u TERN_PASSPHRASE '{}' --home '{}' whoami; echo \"exit=$?\"; sleep 600",
            common::tern_bin().display(),
            alice.home().display()
        );
        Tmux::shell(tag, &command)
    };
    let Some(right) = run("prompt-right") else {
        return;
    };
    right.wait_for("Passphrase:");
    right.keys(common::PASSPHRASE);
    right.key("Enter");
    let screen = right.wait_for("exit=");
    assert!(screen.contains("exit=0"), "{screen}");
    assert!(screen.contains("alice (user id"), "{screen}");
    // What was typed is not echoed.
    assert!(!screen.contains(common::PASSPHRASE), "{screen}");

    let Some(wrong) = run("prompt-wrong") else {
        return;
    };
    wrong.wait_for("Passphrase:");
    wrong.keys("not the passphrase");
    wrong.key("Enter");
    let screen = wrong.wait_for("exit=");
    assert!(screen.contains("exit=4"), "{screen}");
    assert!(screen.contains("wrong passphrase"), "{screen}");
}

#[test]
fn chat_tui_rings_the_bell_for_a_new_message() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);

    let Some(tui) = Tmux::chat(&alice, "bell") else {
        return;
    };
    assert!(!tui.bell_rang(), "no bell before any message");
    bob.ok(&["send", "alice", "ring ring"]);
    tui.wait_for("ring ring");
    common::eventually("the bell", || tui.bell_rang().then_some(()));
}

#[test]
fn chat_tui_runs_notify_send_when_desktop_notifications_are_configured() {
    let relay = Relay::start();
    let (alice, bob) = relay.pair();
    bob.ok(&["contact", "add", "alice"]);
    let config = alice.home().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("notifications = \"bell\"", "notifications = \"desktop\"");
    assert!(text.contains("desktop"), "{text}");
    std::fs::write(&config, text).unwrap();

    // A stand-in for notify-send that records its arguments.
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("notified");
    let script = bin.path().join("notify-send");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let env = format!("PATH='{}':\"$PATH\" ", bin.path().display());
    let Some(tui) = Tmux::chat_with(&alice, "desktop", &env) else {
        return;
    };
    bob.ok(&["send", "alice", "desktop ping"]);
    tui.wait_for("desktop ping");
    let recorded = common::eventually("notify-send to run", || {
        std::fs::read_to_string(&record).ok()
    });
    assert_eq!(recorded.trim(), "tern new message");
    assert!(!tui.bell_rang(), "a desktop notification replaces the bell");
}
