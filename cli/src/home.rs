//! The state directory: where it is, its `config.toml`, and the passphrase.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::failure::Failure;

/// Largest config file read (it holds a few settings).
const MAX_CONFIG_LEN: u64 = 64 * 1024;
/// Environment variable holding the store passphrase.
pub const PASSPHRASE_ENV: &str = "TERN_PASSPHRASE";

/// How new messages are announced in `tern chat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    /// Ring the terminal bell.
    #[default]
    Bell,
    /// Run `notify-send` (desktop notification), falling back to the bell.
    Desktop,
    /// Stay quiet.
    Off,
}

/// Key bindings of `tern chat`, as key names like `ctrl+n`, `alt+enter`, `f1`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyBindings {
    /// Send the message being typed.
    pub send: String,
    /// Insert a line break.
    pub newline: String,
    /// Next chat.
    pub next_chat: String,
    /// Previous chat.
    pub prev_chat: String,
    /// Search the open chat.
    pub search: String,
    /// Search all chats.
    pub search_all: String,
    /// Scroll the conversation up.
    pub scroll_up: String,
    /// Scroll the conversation down.
    pub scroll_down: String,
    /// Quit.
    pub quit: String,
}

impl Default for KeyBindings {
    fn default() -> Self {
        Self {
            send: "enter".into(),
            newline: "alt+enter".into(),
            next_chat: "ctrl+n".into(),
            prev_chat: "ctrl+p".into(),
            search: "ctrl+f".into(),
            search_all: "ctrl+g".into(),
            scroll_up: "pageup".into(),
            scroll_down: "pagedown".into(),
            quit: "ctrl+q".into(),
        }
    }
}

/// `config.toml` in the state directory. `tern init` writes the relay part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The relay's `HOST:PORT`.
    pub relay: String,
    /// SHA-256 fingerprint of the relay's self-signed certificate; without
    /// one, the system's certificate authorities are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// TLS server name of the relay.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// How new messages are announced in `tern chat`.
    #[serde(default)]
    pub notifications: Notify,
    /// Key bindings of `tern chat`.
    #[serde(default)]
    pub keybindings: KeyBindings,
}

fn default_server_name() -> String {
    "tern-relay".into()
}

/// The state directory and the files in it.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `dir`, or the platform data directory.
    pub fn resolve(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(dir) => dir,
            None => default_dir().ok_or_else(|| {
                Failure::Usage("cannot find a home directory; pass --home DIR".into())
            })?,
        };
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encrypted store.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join("tern.db")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Where `tern recv` remembers the last message it printed.
    pub fn recv_mark_path(&self) -> PathBuf {
        self.dir.join("recv.mark")
    }

    /// Log file of `tern chat` (the screen is taken).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("tern.log")
    }

    /// Creates the directory (private to the user).
    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        restrict(&self.dir)
    }

    /// Reads `config.toml`; a missing one means `tern init` was not run.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let path = self.config_path();
        if !path.exists() {
            return Err(Failure::NotInitialized(self.dir.clone()).into());
        }
        let len = std::fs::metadata(&path)?.len();
        if len > MAX_CONFIG_LEN {
            anyhow::bail!("{} is larger than {MAX_CONFIG_LEN} bytes", path.display());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Writes `config.toml`.
    pub fn save_config(&self, config: &Config) -> anyhow::Result<()> {
        let text = toml::to_string(config)?;
        let path = self.config_path();
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(unix)]
fn restrict(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))
}

#[cfg(not(unix))]
fn restrict(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// `$XDG_DATA_HOME/tern`, else `$HOME/.local/share/tern` (`%APPDATA%\tern` on Windows).
fn default_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(data) = non_empty("XDG_DATA_HOME") {
        return Some(PathBuf::from(data).join("tern"));
    }
    if cfg!(windows) {
        return non_empty("APPDATA").map(|d| PathBuf::from(d).join("tern"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".local/share/tern"))
}

/// The store passphrase: `TERN_PASSPHRASE`, else asked for on the terminal
/// without echo (twice when `confirm`).
pub fn passphrase(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(value));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|_| {
                Failure::Usage(format!(
                    "no passphrase: set {PASSPHRASE_ENV} or run tern in a terminal"
                ))
            })
    };
    let first = ask("Passphrase: ")?;
    if confirm {
        if first.is_empty() {
            return Err(Failure::Usage("the passphrase must not be empty".into()).into());
        }
        let again = ask("Passphrase again: ")?;
        if *again != *first {
            return Err(Failure::Usage("the passphrases differ".into()).into());
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_fills_defaults() {
        let text = r#"
            relay = "relay.example:4433"
            fingerprint = "ab"
            notifications = "desktop"
            [keybindings]
            quit = "ctrl+x"
        "#;
        let config: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server_name, "tern-relay");
        assert_eq!(config.fingerprint.as_deref(), Some("ab"));
        assert_eq!(config.notifications, Notify::Desktop);
        assert_eq!(config.keybindings.quit, "ctrl+x");
        assert_eq!(config.keybindings.send, "enter");
        let again: Config = toml::from_str(&toml::to_string(&config).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, config);
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let typo = "relay = \"r:1\"\nfingerprint = \"ab\"\nnotification = \"off\"\n";
        assert!(toml::from_str::<Config>(typo).is_err());
        let bad_key = "relay = \"r:1\"\nfingerprint = \"ab\"\n[keybindings]\nsned = \"enter\"\n";
        assert!(toml::from_str::<Config>(bad_key).is_err());
    }
}
