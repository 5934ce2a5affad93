//! Everything `--json` prints: one enum of records, tagged by `type`.
//!
//! Each kind of object has exactly one shape, whichever command prints it,
//! and every field is always present (`null` when it does not apply).
//! `docs/cli.md` documents each record field by field; the tests below and
//! the end-to-end tests check every record against that document.

use std::path::Path;

use serde::Serialize;
use tern_core::{
    AccountInfo, AttachmentInfo, ChatInfo, ContactInfo, DeliveryStatus, DeviceInfo, Message,
    SearchHit, TransferState, Verification,
};

use crate::failure::Exit;
use crate::session::Names;

/// One line of `--json` output: on stdout, except `error` and `warning`,
/// which go to stderr.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A message: `send`, `send-file`, `recv`, `history`.
    Message(MessageRecord),
    /// A search result: `search`.
    Hit(HitRecord),
    /// This device's account: `init`, `whoami`, `link accept`.
    Account(AccountRecord),
    /// A contact: `contact add`, `contact list`.
    Contact(ContactRecord),
    /// The safety number shared with a contact: `contact verify`.
    SafetyNumber(SafetyNumberRecord),
    /// A group: `group create`, `group rename`, `group list`.
    Group(GroupRecord),
    /// A member added to, removed from or promoted in a group: `group add`,
    /// `group remove`, `group promote`.
    Membership(MembershipRecord),
    /// A saved attachment: `download`.
    Download(DownloadRecord),
    /// The one-time code a new device enters: `link new`.
    LinkCode(LinkCodeRecord),
    /// The device `link new` just linked.
    Linked(DeviceRecord),
    /// One of the account's devices: `device list`.
    Device(DeviceRecord),
    /// A device removed from the account: `device remove`.
    DeviceRemoved(DeviceRemovedRecord),
    /// Something worth knowing that did not stop the command (stderr).
    Warning(WarningRecord),
    /// Why the command failed (stderr, the last line it prints).
    Error(ErrorRecord),
}

/// A message and its attachments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageRecord {
    /// Local message id (for `tern download`).
    pub id: i64,
    /// The chat as named on the command line: a contact, or `#group`.
    pub chat: String,
    /// The chat id, hex.
    pub chat_id: String,
    /// The relay's position in the chat; `None` until the relay stored it.
    pub seq: Option<u64>,
    /// The sender's name.
    pub from: String,
    /// The sender's user id, hex.
    pub from_id: String,
    /// The sending device.
    pub device: u32,
    /// Whether this account sent it.
    pub outgoing: bool,
    /// Send time on the sender's clock, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// The text (empty for a file).
    pub text: String,
    /// Delivery status of an outgoing message, where the command reports it.
    pub status: Option<&'static str>,
    /// Attached files.
    pub attachments: Vec<AttachmentRecord>,
}

impl MessageRecord {
    /// The record of `message`, with names resolved by `names`.
    pub fn new(
        names: &Names,
        message: &Message,
        status: Option<DeliveryStatus>,
        attachments: &[AttachmentInfo],
    ) -> Self {
        Self {
            id: message.id.0,
            chat: names.chat(&message.chat_id),
            chat_id: hex::encode(message.chat_id),
            seq: message.seq,
            from: names.sender(message),
            from_id: hex::encode(message.sender),
            device: message.sender_device,
            outgoing: message.outgoing,
            sent_at_ms: message.sent_at_ms,
            text: message.text.clone(),
            status: status.map(status_name),
            attachments: attachments.iter().map(AttachmentRecord::new).collect(),
        }
    }
}

/// A file attached to a message (inside [`MessageRecord::attachments`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttachmentRecord {
    /// The sender's file name.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Whether it is on this device (downloaded, or sent from here).
    pub downloaded: bool,
}

impl AttachmentRecord {
    /// The record of an attachment.
    pub fn new(attachment: &AttachmentInfo) -> Self {
        Self {
            file_name: attachment.file_name.clone(),
            content_type: attachment.content_type.clone(),
            size: attachment.size,
            downloaded: attachment.state == TransferState::Downloaded,
        }
    }
}

/// A search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HitRecord {
    /// The matching message's local id.
    pub message_id: i64,
    /// Its chat, as named on the command line.
    pub chat: String,
    /// Its chat id, hex.
    pub chat_id: String,
    /// The sender's name.
    pub from: String,
    /// The sender's user id, hex.
    pub from_id: String,
    /// Send time, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// An excerpt with the matches in `[brackets]`.
    pub snippet: String,
}

impl HitRecord {
    /// The record of `hit`, with names resolved by `names`.
    pub fn new(names: &Names, hit: &SearchHit) -> Self {
        Self {
            message_id: hit.message_id.0,
            chat: names.chat(&hit.chat_id),
            chat_id: hex::encode(hit.chat_id),
            from: names.user(&hit.sender.user_id),
            from_id: hex::encode(hit.sender.user_id),
            sent_at_ms: hit.sent_at_ms,
            snippet: hit.snippet.clone(),
        }
    }
}

/// The account this device belongs to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountRecord {
    /// The registered user name.
    pub user_name: String,
    /// The user id, hex.
    pub user_id: String,
    /// This device's id within the account.
    pub device_id: u32,
    /// The relay's `HOST:PORT` from `config.toml`.
    pub relay: String,
    /// The state directory.
    pub home: String,
}

impl AccountRecord {
    /// The record of `account`, kept in `home` and served by `relay`.
    pub fn new(home: &Path, relay: &str, account: &AccountInfo) -> Self {
        Self {
            user_name: account.user_name.clone(),
            user_id: hex::encode(account.user_id),
            device_id: account.device_id,
            relay: relay.to_owned(),
            home: home.to_string_lossy().into_owned(),
        }
    }
}

/// A contact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContactRecord {
    /// The contact's user name.
    pub name: String,
    /// The contact's user id, hex.
    pub user_id: String,
    /// [`verification_name`] of the contact.
    pub verification: &'static str,
}

impl ContactRecord {
    /// The record of `contact`.
    pub fn new(contact: &ContactInfo) -> Self {
        Self {
            name: contact.user_name.clone(),
            user_id: hex::encode(contact.user_id),
            verification: verification_name(contact.verification),
        }
    }
}

/// The safety number shared with a contact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SafetyNumberRecord {
    /// The contact's user name.
    pub name: String,
    /// 60 decimal digits, the same on both sides.
    pub safety_number: String,
    /// [`verification_name`] after the command.
    pub verification: &'static str,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupRecord {
    /// The group's name (empty until a group created elsewhere gets one).
    pub name: String,
    /// The group's chat id, hex.
    pub chat_id: String,
    /// Member names, this account included.
    pub members: Vec<String>,
    /// Names of the members who are admins.
    pub admins: Vec<String>,
    /// Messages from others not marked read yet.
    pub unread: u64,
}

impl GroupRecord {
    /// The record of the group `chat`, with names resolved by `names`.
    pub fn new(names: &Names, chat: &ChatInfo) -> Self {
        Self {
            name: chat.title.clone(),
            chat_id: hex::encode(chat.chat_id),
            members: chat.members.iter().map(|m| names.user(m)).collect(),
            admins: chat.admins.iter().map(|m| names.user(m)).collect(),
            unread: chat.unread,
        }
    }
}

/// A membership change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MembershipRecord {
    /// The group as named on the command line (`#name`).
    pub group: String,
    /// The group's chat id, hex.
    pub chat_id: String,
    /// The user added, removed or promoted.
    pub user: String,
    /// `added`, `removed` or `promoted` (made an admin).
    pub change: &'static str,
}

/// An attachment saved to a file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DownloadRecord {
    /// The message's local id.
    pub message_id: i64,
    /// The sender's file name.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Where it was written.
    pub path: String,
}

/// A one-time link code.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkCodeRecord {
    /// The code to enter on the new device.
    pub code: String,
}

/// One of the account's devices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceRecord {
    /// Device id within the account.
    pub device_id: u32,
    /// Its Ed25519 identity key, hex.
    pub identity_key: String,
    /// Whether it is the device running the command.
    pub this_device: bool,
}

impl DeviceRecord {
    /// The record of `device`.
    pub fn new(device: &DeviceInfo) -> Self {
        Self {
            device_id: device.device_id,
            identity_key: hex::encode(device.identity_key),
            this_device: device.this_device,
        }
    }
}

/// A removed device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceRemovedRecord {
    /// Its device id.
    pub device_id: u32,
}

/// A warning.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WarningRecord {
    /// A sentence for a person.
    pub warning: String,
}

/// A failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRecord {
    /// The exit code (see [`Exit`]).
    pub code: u8,
    /// A sentence for a person.
    pub error: String,
}

impl ErrorRecord {
    /// The record of a failure that exits with `exit`.
    pub fn new(exit: Exit, error: String) -> Self {
        Self {
            code: exit.code(),
            error,
        }
    }
}

/// The JSON name of a status.
pub fn status_name(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
    }
}

/// The JSON (and text) name of a verification state.
pub fn verification_name(state: Verification) -> &'static str {
    match state {
        Verification::Default => "unverified",
        Verification::Verified => "verified",
        Verification::Unverified => "identity-changed",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cli_doc::CliDoc;

    /// One record of every type, every optional field filled.
    fn samples() -> Vec<Record> {
        let message = MessageRecord {
            id: 7,
            chat: "bob".into(),
            chat_id: "ab".repeat(16),
            seq: Some(3),
            from: "alice".into(),
            from_id: "cd".repeat(16),
            device: 1,
            outgoing: true,
            sent_at_ms: 1_795_000_000_000,
            text: "hello".into(),
            status: Some(status_name(DeliveryStatus::Delivered)),
            attachments: vec![AttachmentRecord {
                file_name: "map.png".into(),
                content_type: "image/png".into(),
                size: 4,
                downloaded: false,
            }],
        };
        let device = DeviceRecord {
            device_id: 2,
            identity_key: "ef".repeat(32),
            this_device: false,
        };
        vec![
            Record::Message(message),
            Record::Hit(HitRecord {
                message_id: 7,
                chat: "#trip".into(),
                chat_id: "ab".repeat(16),
                from: "alice".into(),
                from_id: "cd".repeat(16),
                sent_at_ms: 0,
                snippet: "[hello]".into(),
            }),
            Record::Account(AccountRecord::new(
                Path::new("/home/a/.local/share/tern"),
                "127.0.0.1:4433",
                &AccountInfo {
                    user_id: [1; 16],
                    user_name: "alice".into(),
                    device_id: 1,
                },
            )),
            Record::Contact(ContactRecord::new(&ContactInfo {
                user_id: [2; 16],
                user_name: "bob".into(),
                verification: Verification::Unverified,
            })),
            Record::SafetyNumber(SafetyNumberRecord {
                name: "bob".into(),
                safety_number: "0".repeat(60),
                verification: verification_name(Verification::Verified),
            }),
            Record::Group(GroupRecord {
                name: "trip".into(),
                chat_id: "ab".repeat(16),
                members: vec!["alice".into(), "bob".into()],
                admins: vec!["alice".into()],
                unread: 2,
            }),
            Record::Membership(MembershipRecord {
                group: "#trip".into(),
                chat_id: "ab".repeat(16),
                user: "carol".into(),
                change: "added",
            }),
            Record::Download(DownloadRecord {
                message_id: 7,
                file_name: "map.png".into(),
                content_type: "image/png".into(),
                size: 4,
                path: "map.png".into(),
            }),
            Record::LinkCode(LinkCodeRecord {
                code: "tern-link:1:00".into(),
            }),
            Record::Linked(device.clone()),
            Record::Device(device),
            Record::DeviceRemoved(DeviceRemovedRecord { device_id: 2 }),
            Record::Warning(WarningRecord {
                warning: "careful".into(),
            }),
            Record::Error(ErrorRecord::new(Exit::Unknown, "unknown contact".into())),
        ]
    }

    fn to_value(record: &Record) -> Value {
        serde_json::to_value(record).unwrap_or_else(|e| panic!("{e}"))
    }

    fn doc() -> CliDoc {
        CliDoc::load().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_record_has_exactly_the_documented_fields() {
        let doc = doc();
        let samples: Vec<Value> = samples().iter().map(to_value).collect();
        for sample in &samples {
            if let Err(e) = doc.check(sample) {
                panic!("docs/cli.md disagrees with the code: {e}\n{sample}");
            }
        }
        let sampled: std::collections::BTreeSet<&str> =
            samples.iter().filter_map(|s| s["type"].as_str()).collect();
        assert_eq!(
            sampled,
            doc.record_types(),
            "docs/cli.md documents other record types than the code has"
        );
    }

    #[test]
    fn the_documentation_check_catches_a_field_out_of_place() {
        let doc = doc();
        let Some(Record::Message(message)) = samples().into_iter().next() else {
            panic!("the first sample is a message");
        };
        let good = to_value(&Record::Message(message));
        assert!(doc.check(&good).is_ok());
        let change = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut bad = good.clone();
            if let Some(object) = bad.as_object_mut() {
                edit(object);
            }
            doc.check(&bad)
        };
        let added = change(&|o| {
            o.insert("colour".into(), json!("blue"));
        });
        assert!(added.is_err_and(|e| e.contains("colour")));
        let missing = change(&|o| {
            o.remove("seq");
        });
        assert!(missing.is_err_and(|e| e.contains("seq")));
        let mistyped = change(&|o| {
            o.insert("outgoing".into(), json!("yes"));
        });
        assert!(mistyped.is_err_and(|e| e.contains("outgoing")));
        let null = change(&|o| {
            o.insert("text".into(), Value::Null);
        });
        assert!(null.is_err_and(|e| e.contains("text")));
        let nested = change(&|o| {
            o.insert("attachments".into(), json!([{"file_name": "x"}]));
        });
        assert!(nested.is_err_and(|e| e.contains("attachment")));
        let unknown = doc.check(&json!({"type": "telegram"}));
        assert!(unknown.is_err_and(|e| e.contains("telegram")));
    }

    #[test]
    fn documentation_tables_must_be_well_formed() {
        let table = |rows: &str| {
            format!("### `thing`\n\n| field | type | meaning |\n|---|---|---|\n{rows}")
        };
        let ok = CliDoc::parse(&table(
            "| `type` | string | x |\n| `n` | integer or null | y |\n",
        ));
        assert!(ok.is_ok_and(|doc| doc.record_types().contains("thing")));
        for bad in [
            "| `type` | text | unknown type |\n",
            "| type | string | no backticks |\n",
            "| `type` | string | x |\n| `type` | string | twice |\n",
            "| `type` | string | x |\n| `list` | array of widget | undocumented object |\n",
        ] {
            assert!(CliDoc::parse(&table(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_are_tagged_in_snake_case_with_null_for_absent_values() {
        let Some(Record::Message(message)) = samples().into_iter().next() else {
            panic!("the first sample is a message");
        };
        let queued = to_value(&Record::Message(MessageRecord {
            seq: None,
            status: None,
            attachments: Vec::new(),
            ..message
        }));
        assert_eq!(queued["type"], "message");
        assert_eq!(queued["seq"], Value::Null);
        assert_eq!(queued["status"], Value::Null);
        assert_eq!(queued["attachments"], json!([]));
        let code = to_value(&Record::LinkCode(LinkCodeRecord { code: "c".into() }));
        assert_eq!(code, json!({"type": "link_code", "code": "c"}));
        let removed = to_value(&Record::DeviceRemoved(DeviceRemovedRecord { device_id: 3 }));
        assert_eq!(removed, json!({"type": "device_removed", "device_id": 3}));
        let error = to_value(&Record::Error(ErrorRecord::new(
            Exit::RelayUnreachable,
            "no answer".into(),
        )));
        assert_eq!(
            error,
            json!({"type": "error", "code": 3, "error": "no answer"})
        );
    }

    #[test]
    fn core_types_map_to_their_records() {
        let names = Names::default();
        let account = AccountInfo {
            user_id: [0xaa; 16],
            user_name: "alice".into(),
            device_id: 1,
        };
        let record = AccountRecord::new(Path::new("/tmp/h"), "r:1", &account);
        assert_eq!(record.user_id, "aa".repeat(16));
        assert_eq!(record.home, "/tmp/h");
        let chat = ChatInfo {
            chat_id: [0xbb; 16],
            kind: tern_core::ChatKind::Group,
            title: "trip".into(),
            members: vec![[0xcc; 16], [0xdd; 16]],
            admins: vec![[0xdd; 16]],
            unread: 4,
        };
        let group = GroupRecord::new(&names, &chat);
        assert_eq!(
            group.members,
            ["cccccccc", "dddddddd"],
            "unknown users by short id"
        );
        assert_eq!(group.admins, ["dddddddd"]);
        assert_eq!(group.unread, 4);
        let device = DeviceRecord::new(&DeviceInfo {
            device_id: 1,
            identity_key: [0xdd; 32],
            this_device: true,
        });
        assert_eq!(device.identity_key, "dd".repeat(32));
        assert_eq!(status_name(DeliveryStatus::Read), "read");
        assert_eq!(
            verification_name(Verification::Unverified),
            "identity-changed"
        );
    }
}
