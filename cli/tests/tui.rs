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
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    alice.ok(&["contact", "add", "bob"]);
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
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    alice.ok(&["contact", "add", "bob"]);
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
    let alice = relay.user("alice");
    let bob = relay.user("bob");
    alice.ok(&["contact", "add", "bob"]);
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
