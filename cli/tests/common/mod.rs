//! Helpers for end-to-end tests: the real `tern-relay` binary and `tern` processes,
//! each user with its own home directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tern_testkit::{RelayProcess, relay_binary};

/// The passphrase every test user uses.
pub const PASSPHRASE: &str = "correct horse battery staple";
/// How long a polled condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The real `tern-relay` binary, serving on an ephemeral port with its own
/// data directory; killed when dropped.
pub struct Relay {
    process: RelayProcess,
    /// `HOST:PORT`.
    pub address: String,
    /// Certificate fingerprint.
    pub fingerprint: String,
}

impl Relay {
    pub fn start() -> Self {
        let process = RelayProcess::start(relay_binary());
        Self {
            address: process.addr.to_string(),
            fingerprint: process.fingerprint.clone(),
            process,
        }
    }

    /// Stops the relay (the port then answers nothing).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Alice and Bob, each `tern init`ed; Alice has Bob as a contact.
    pub fn pair(&self) -> (User, User) {
        let (alice, bob) = (self.user("alice"), self.user("bob"));
        alice.ok(&["contact", "add", "bob"]);
        (alice, bob)
    }

    /// Creates a user: `tern init` in a fresh home (cheap store key for tests).
    pub fn user(&self, name: &str) -> User {
        let user = User {
            home: tempfile::tempdir().unwrap(),
            name: name.into(),
        };
        user.ok(&[
            "init",
            "--relay",
            &self.address,
            "--fingerprint",
            &self.fingerprint,
            "--name",
            name,
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
        ]);
        user
    }
}

/// One user with one device (one home).
pub struct User {
    pub home: tempfile::TempDir,
    pub name: String,
}

/// The `tern` binary under test.
pub fn tern_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tern"))
}

impl User {
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `tern --home HOME ARGS` with the passphrase in the environment.
    pub fn tern(&self, args: &[&str]) -> Output {
        self.tern_with_stdin(args, None)
    }

    pub fn tern_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(tern_bin());
        command
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env("TERN_PASSPHRASE", PASSPHRASE)
            .env_remove("TERN_HOME")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.tern(args);
        assert!(
            output.status.success(),
            "{}: tern {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            self.name,
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command with `--json` that must succeed; parses every line.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The exit code of a command expected to fail.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let output = self.tern(args);
        assert!(
            !output.status.success(),
            "tern {args:?} unexpectedly succeeded"
        );
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Replaces the account key pinned for `contact` in this user's store,
    /// as if the contact had re-created their account keys.
    pub fn forge_contact_key(&self, contact: &str) {
        use tern_core::KeySource;
        use tern_store::Store;
        let store = Store::open(
            self.home().join("tern.db"),
            KeySource::passphrase(PASSPHRASE),
        )
        .unwrap();
        store
            .transaction(|tx| {
                let mut found = tx
                    .contacts()?
                    .into_iter()
                    .find(|c| c.display_name == contact)
                    .unwrap();
                found.identity_key = Some(vec![7; 32]);
                tx.upsert_contact(&found)
            })
            .unwrap();
    }

    /// Texts of the messages `tern recv` prints now.
    pub fn recv_texts(&self) -> Vec<String> {
        texts(&self.json(&["recv"]))
    }

    /// Runs `tern recv` until `count` messages arrived in total.
    pub fn recv_until(&self, count: usize) -> Vec<Value> {
        let mut got = Vec::new();
        eventually("messages to arrive", || {
            got.extend(self.json(&["recv"]));
            (got.len() >= count).then_some(())
        });
        got
    }
}

/// The `text` fields of message objects.
pub fn texts(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["type"] == "message")
        .map(|o| o["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `check` until it returns `Some`, failing the test at the deadline.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
