//! Command-line arguments: every subcommand, its options and the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::failure::exit_codes_help;

/// Help text appended to `tern --help`: the environment, then the exit
/// codes (generated from [`Exit`](crate::failure::Exit), so the list cannot drift).
fn after_help() -> String {
    format!(
        "\
Environment:
  TERN_PASSPHRASE   passphrase of the local store (otherwise asked for on the terminal)
  TERN_HOME         state directory (same as --home)
  TERN_LOG          log filter for diagnostics on stderr, e.g. TERN_LOG=debug

{}",
        exit_codes_help()
    )
}

/// tern: an end-to-end encrypted terminal chat client, scriptable and interactive.
///
/// Every subcommand prints human-readable text, or one JSON object per line
/// with --json (every record and field: docs/cli.md). `tern chat` opens the
/// interactive client.
#[derive(Debug, Parser)]
#[command(name = "tern", version, after_help = after_help())]
pub struct Cli {
    /// State directory: the encrypted store and config.toml
    /// [default: $XDG_DATA_HOME/tern or ~/.local/share/tern].
    #[arg(long, global = true, value_name = "DIR", env = "TERN_HOME")]
    pub home: Option<PathBuf>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the account and its first device, and register with the relay.
    Init(InitArgs),
    /// Show this device's account.
    Whoami,
    /// Manage contacts.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Send a text message to a contact or a group (TEXT `-` reads stdin).
    #[command(override_usage = "tern send NAME TEXT\n       tern send --group GROUP TEXT")]
    Send(SendArgs),
    /// Send a file (encrypted, through the relay's blob store).
    #[command(
        name = "send-file",
        override_usage = "tern send-file NAME PATH\n       tern send-file --group GROUP PATH"
    )]
    SendFile(SendFileArgs),
    /// Download, verify and decrypt the attachment of a message.
    Download(DownloadArgs),
    /// Fetch what is new and print it (--follow: keep streaming).
    Recv(RecvArgs),
    /// Show a chat's history, oldest first.
    History(HistoryArgs),
    /// Search the local history.
    Search(SearchArgs),
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Link a new device to your account.
    #[command(subcommand)]
    Link(LinkCommand),
    /// List or remove your account's devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Open the interactive chat client.
    Chat,
}

/// `tern link …`.
#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// On an EXISTING device: print a one-time link code and its QR code,
    /// wait for the new device to enter it, then link that device.
    New {
        /// Seconds the code stays valid (the relay keeps a mailbox at most its
        /// `limits.provisioning_ttl_secs`, 300 by default).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
        /// Ask on the terminal before linking, showing the new device's key
        /// [default: link the device that presents the code].
        #[arg(long)]
        confirm: bool,
    },
    /// On the NEW device (empty --home): enter the link code shown by the
    /// existing device; receives the account, then its contacts and history.
    Accept {
        /// The link code.
        code: String,
        /// The relay and the store key.
        #[command(flatten)]
        relay: RelayArgs,
        /// Seconds to wait for the existing device's answer.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
}

/// `tern device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List the account's devices.
    List,
    /// Remove another device of the account.
    Remove {
        /// The device id (see `tern device list`).
        id: u32,
    },
}

/// Where the relay is and how the new store's key is derived (`init`, `link accept`).
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The relay's UDP address; for a cluster, its nodes comma-separated
    /// (`HOST:PORT,HOST:PORT`, one certificate): the client moves to the
    /// next node when one does not answer. A host name counts for every
    /// address it resolves to.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
    pub relay: String,
    /// SHA-256 fingerprint of the relay's self-signed certificate (printed by
    /// `tern-relay serve`). Without it, the relay's certificate must chain to
    /// a certificate authority the system trusts and name HOST.
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// TLS server name of the relay's certificate
    /// [default: `tern-relay` with --fingerprint, else HOST].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Argon2id memory for the store key, in MiB (lower it on small devices).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id iterations for the store key.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
}

/// `tern init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The relay and the store key.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The user name to register.
    #[arg(long)]
    pub name: String,
    /// Invite token, if the relay requires one.
    #[arg(long, value_name = "TOKEN")]
    pub invite: Option<String>,
}

/// `tern contact …`.
#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Look a user up on the relay and add them as a contact.
    Add {
        /// Their user name.
        name: String,
    },
    /// List contacts with their verification state.
    List,
    /// Show the safety number shared with a contact, with a QR code.
    Verify(VerifyArgs),
}

/// `tern contact verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The contact.
    pub name: String,
    /// Record that the safety numbers were compared and match.
    #[arg(long, conflicts_with = "accept_change")]
    pub mark_verified: bool,
    /// Accept a verified contact's new identity (sending is refused until then).
    #[arg(long)]
    pub accept_change: bool,
    /// Do not print the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

/// `tern send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Send to this group; then the only positional argument is TEXT.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// NAME TEXT, or TEXT with --group. TEXT `-` reads standard input.
    #[arg(value_name = "NAME TEXT", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Return once the message is stored locally, without waiting for the relay's ✓.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the relay's ✓.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

/// `tern send-file`.
#[derive(Debug, Args)]
pub struct SendFileArgs {
    /// Send to this group; then the only positional argument is PATH.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// NAME PATH, or PATH with --group.
    #[arg(value_name = "NAME PATH", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// MIME type [default: guessed from the file name].
    #[arg(long = "type", value_name = "MIME")]
    pub content_type: Option<String>,
    /// Seconds to wait for the relay's ✓.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

/// `tern download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The message's id (`id` in `--json` output, `#N` in text output).
    pub message_id: i64,
    /// Where to write the file [default: its name, in the current directory].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// `tern recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Keep printing messages as they arrive, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Send read receipts for what is printed.
    #[arg(long)]
    pub mark_read: bool,
    /// Seconds to wait for the relay.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

/// `tern history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The contact.
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub name: Option<String>,
    /// The group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The newest N messages.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Show only what is stored locally, without fetching from the relay first.
    #[arg(long)]
    pub offline: bool,
    /// Seconds to wait for the relay before showing the local history.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub timeout: u64,
}

/// `tern search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to find (the last one also matches as a prefix with --prefix).
    pub query: String,
    /// Only this chat (a contact or group name).
    #[arg(long, value_name = "NAME")]
    pub chat: Option<String>,
    /// Match the last word as a prefix.
    #[arg(long)]
    pub prefix: bool,
    /// At most N hits.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

/// `tern group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (members who are not contacts yet are looked up on
    /// the relay and added as contacts).
    Create {
        /// The group's name (sent to every member).
        name: String,
        /// A member (a contact or any registered user); repeat for more.
        #[arg(long = "member", value_name = "NAME", required = true)]
        members: Vec<String>,
    },
    /// Add a member to a group (only admins may; a user who is not a
    /// contact yet is looked up on the relay and added as a contact).
    Add {
        /// The group.
        group: String,
        /// The contact or registered user to add.
        name: String,
    },
    /// Remove a member from a group (only admins may remove others; your
    /// own name leaves it).
    Remove {
        /// The group.
        group: String,
        /// The member to remove.
        name: String,
    },
    /// Make a member an admin of a group (only admins may; admins add and
    /// remove members and promote others).
    Promote {
        /// The group.
        group: String,
        /// The member to make an admin.
        name: String,
    },
    /// Rename a group (every member sees the new name).
    Rename {
        /// The group.
        group: String,
        /// The new name.
        name: String,
    },
    /// List groups with their members, admins and unread counts.
    List,
}
