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
        Self::chat_with(user, tag, "")
    }

    /// Like [`Self::chat`], with `env` (shell assignments such as
    /// `PATH=/x:$PATH `) before the command.
    pub fn chat_with(user: &User, tag: &str, env: &str) -> Option<Self> {
        let command = format!(
            "{env}TERN_PASSPHRASE='{}' '{}' --home '{}' chat",
            PASSPHRASE,
            tern_bin().display(),
            user.home().display()
        );
        let tmux = Self::shell(tag, &command)?;
        tmux.wait_for("chats · online");
        Some(tmux)
    }

    /// Runs the shell command line `command` in a new tmux server (a
    /// 120×30 terminal); `None` without tmux.
    pub fn shell(tag: &str, command: &str) -> Option<Self> {
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
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "tern",
            "-x",
            "120",
            "-y",
            "30",
            command,
        ]);
        Some(tmux)
    }

    /// Whether the terminal bell rang in the window since it started.
    pub fn bell_rang(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "tern", "#{window_bell_flag}"])
            .trim()
            == "1"
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
