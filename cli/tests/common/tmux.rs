//! `tern chat` in a detached tmux session: keys in, screen out.

use super::{PASSPHRASE, User, eventually, tern_bin};

/// A tmux server on its own socket (in a temporary directory), killed when
/// dropped.
pub struct Tmux {
    /// The tmux server socket.
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `tern chat` for `user` in a new tmux server; `None` without tmux.
    pub fn chat(user: &User, tag: &str) -> Option<Self> {
        if std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join(format!("tmux-{tag}")),
            _dir: dir,
        };
        let command = format!(
            "TERN_PASSPHRASE='{}' '{}' --home '{}' chat",
            PASSPHRASE,
            tern_bin().display(),
            user.home().display()
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "tern",
            "-x",
            "120",
            "-y",
            "30",
            &command,
        ]);
        tmux.wait_for("chats · online");
        Some(tmux)
    }

    pub fn keys(&self, text: &str) {
        self.run(&["send-keys", "-t", "tern", "-l", text]);
    }

    pub fn key(&self, name: &str) {
        self.run(&["send-keys", "-t", "tern", name]);
    }

    pub fn run(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tern"])
    }

    pub fn wait_for(&self, text: &str) -> String {
        eventually(&format!("{text:?} on the screen"), || {
            let screen = self.screen();
            screen.contains(text).then_some(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
