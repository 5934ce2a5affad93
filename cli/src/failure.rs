//! Failures of the CLI itself and the documented exit codes.

use std::path::PathBuf;

use tern_core::ClientError;

/// Exit codes a script can rely on: the only definition. `docs/cli.md`
/// documents them (a test checks it against [`Exit::ALL`]) and `tern --help`
/// lists them from [`exit_codes_help`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Any other failure.
    Generic = 1,
    /// Bad arguments.
    Usage = 2,
    /// The relay could not be reached.
    RelayUnreachable = 3,
    /// The passphrase does not open the store.
    WrongPassphrase = 4,
    /// No such contact, user, group or message.
    Unknown = 5,
    /// A verified contact's identity changed and was not accepted yet.
    UntrustedIdentity = 6,
    /// The message can never be sent (the relay refuses it, or it is larger
    /// than the relay accepts); it is not queued.
    Refused = 7,
}

impl Exit {
    /// Every exit code, in numeric order.
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::Generic,
        Exit::Usage,
        Exit::RelayUnreachable,
        Exit::WrongPassphrase,
        Exit::Unknown,
        Exit::UntrustedIdentity,
        Exit::Refused,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, in a few words (`docs/cli.md` starts each
    /// meaning with these words and may add detail).
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success",
            Exit::Generic => "any other failure",
            Exit::Usage => "usage error",
            Exit::RelayUnreachable => "relay unreachable",
            Exit::WrongPassphrase => "wrong passphrase",
            Exit::Unknown => "unknown contact, user, group or message",
            Exit::UntrustedIdentity => "a verified contact's identity changed",
            Exit::Refused => "message refused for good",
        }
    }
}

/// The exit code list at the end of `tern --help`, generated from [`Exit`].
pub fn exit_codes_help() -> String {
    let mut help = String::from("Exit codes (details and JSON output: docs/cli.md):");
    for exit in Exit::ALL {
        help.push_str(&format!("\n  {}  {}", exit.code(), exit.meaning()));
    }
    help
}

/// Failures detected by the CLI before or around a client call.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The home has no `config.toml`.
    #[error("no account in {0}: run `tern init` first (or pass --home)")]
    NotInitialized(PathBuf),
    /// No contact with this name on this device.
    #[error("unknown contact {0:?}: add it with `tern contact add {0}`")]
    UnknownContact(String),
    /// No group with this name on this device.
    #[error("unknown group {0:?}: see `tern group list`")]
    UnknownGroup(String),
    /// Several groups answer to this name (any member may rename a group, so
    /// names are not unique): the message would go to a group the user did
    /// not mean. Lists each candidate's id prefix and members.
    #[error("{name:?} names {} groups, address one by its id prefix: {}", candidates.len(), candidates.join("; "))]
    AmbiguousGroup {
        /// The name given.
        name: String,
        /// `#<id prefix> (member, member, …)` for each group of that name.
        candidates: Vec<String>,
    },
    /// No message with this id carries an attachment.
    #[error("message {0} has no attachment on this device")]
    UnknownMessage(i64),
    /// The relay did not answer in time.
    #[error("relay unreachable: {0}")]
    RelayUnreachable(String),
    /// A message was refused for good (too large, or refused by the relay)
    /// and dropped from the outbox.
    #[error("message not sent: {0}")]
    Refused(String),
}

/// The exit code for an error chain.
pub fn exit_code(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return match failure {
                Failure::Usage(_) | Failure::AmbiguousGroup { .. } => Exit::Usage,
                Failure::NotInitialized(_) => Exit::Generic,
                Failure::UnknownContact(_)
                | Failure::UnknownGroup(_)
                | Failure::UnknownMessage(_) => Exit::Unknown,
                Failure::RelayUnreachable(_) => Exit::RelayUnreachable,
                Failure::Refused(_) => Exit::Refused,
            };
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return client_exit(client);
        }
    }
    Exit::Generic
}

fn client_exit(error: &ClientError) -> Exit {
    match error {
        ClientError::WrongKey => Exit::WrongPassphrase,
        ClientError::Offline(_) => Exit::RelayUnreachable,
        ClientError::MessageTooLarge { .. } => Exit::Refused,
        ClientError::UnknownUser(_) | ClientError::UnknownChat => Exit::Unknown,
        ClientError::UntrustedIdentity => Exit::UntrustedIdentity,
        ClientError::InvalidArgument(_) => Exit::Usage,
        _ => Exit::Generic,
    }
}

/// A sentence for a person, with advice where there is some.
pub fn explain(error: &anyhow::Error) -> String {
    let advice = match exit_code(error) {
        Exit::WrongPassphrase => Some("check the passphrase (TERN_PASSPHRASE or the prompt)"),
        Exit::RelayUnreachable => {
            Some("is the relay running and is the address in config.toml right?")
        }
        Exit::UntrustedIdentity => Some(
            "compare safety numbers with `tern contact verify NAME`, then accept with --accept-change",
        ),
        _ => None,
    };
    let mut text = format!("{error:#}");
    if let Some(advice) = advice {
        text.push_str(" (");
        text.push_str(advice);
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_doc::CliDoc;

    #[test]
    fn client_errors_map_to_documented_codes() {
        let code = |e: ClientError| exit_code(&anyhow::Error::new(e)).code();
        assert_eq!(code(ClientError::WrongKey), 4);
        assert_eq!(code(ClientError::Offline("x".into())), 3);
        assert_eq!(code(ClientError::UnknownUser("x".into())), 5);
        assert_eq!(code(ClientError::UntrustedIdentity), 6);
        assert_eq!(code(ClientError::InvalidArgument("x")), 2);
        assert_eq!(code(ClientError::Refused("x".into())), 1);
    }

    #[test]
    fn docs_cli_md_lists_exactly_these_exit_codes() {
        let doc = CliDoc::load().unwrap_or_else(|e| panic!("{e}"));
        let documented: Vec<u8> = doc.exit_codes().iter().map(|(code, _)| *code).collect();
        let defined: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(documented, defined, "docs/cli.md lists other exit codes");
        for (exit, (_, meaning)) in Exit::ALL.iter().zip(doc.exit_codes()) {
            assert!(
                meaning.starts_with(exit.meaning()),
                "docs/cli.md: exit code {} means {meaning:?}, the code says {:?}",
                exit.code(),
                exit.meaning()
            );
        }
        let help = exit_codes_help();
        assert!(help.contains("docs/cli.md"));
        assert!(help.contains("\n  6  a verified contact's identity changed"));
    }

    #[test]
    fn context_does_not_hide_the_code() {
        let error = anyhow::Error::new(Failure::UnknownContact("bob".into())).context("sending");
        assert_eq!(exit_code(&error), Exit::Unknown);
    }
}
