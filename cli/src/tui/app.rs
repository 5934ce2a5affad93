//! The chat client's state and how events change it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tern_core::{
    AttachmentInfo, ChatId, ChatInfo, ChatKind, DeliveryStatus, Message, MessageId, SearchHit,
    SearchQuery, TransferState, UserId,
};
use tern_core::{Client, ClientError, ClientEvent};

use super::keys::{Action, Keymap};
use crate::peer_text::renamed_notice;
use crate::session::Names;

/// Messages loaded for the open chat.
const HISTORY: u32 = 500;
/// A typing indicator disappears this long after its last refresh.
const TYPING_TTL: Duration = Duration::from_secs(5);
/// Typing indicators are re-sent at most this often.
const TYPING_RESEND: Duration = Duration::from_secs(3);
/// Lines one scroll step moves.
const SCROLL_STEP: usize = 5;
/// Longest input accepted (the relay's text limit is lower anyway).
const MAX_INPUT: usize = 64 * 1024;

/// One chat in the list.
#[derive(Clone, Debug)]
pub struct ChatEntry {
    /// The chat.
    pub info: ChatInfo,
    /// Unread messages (the core's count: reading on another own device
    /// clears it too).
    pub unread: u64,
    /// For direct chats: the other user.
    pub peer: Option<UserId>,
}

/// What the input line is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Writing a message.
    Compose,
    /// Typing a search query (`all`: across chats).
    Search {
        /// Across all chats.
        all: bool,
    },
}

/// What the host should do after an event (the async parts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// Announce a new message (bell or desktop notification).
    Notify,
    /// Subscribe to the contacts' presence.
    SubscribePresence,
    /// Send a file to a chat.
    SendFile(ChatId, PathBuf),
    /// Download a message's attachment into a directory.
    Download(MessageId, PathBuf),
}

/// One line of the open chat: the message, its status, its attachment.
pub type Row = (Message, Option<DeliveryStatus>, Option<AttachmentInfo>);

/// The whole screen state.
pub struct App {
    /// Chats, direct ones first.
    pub chats: Vec<ChatEntry>,
    /// Index of the open chat.
    pub selected: usize,
    /// The open chat's messages, with the status of outgoing ones.
    pub messages: Vec<Row>,
    /// Search results shown instead of the conversation.
    pub results: Option<Vec<SearchHit>>,
    /// The input text.
    pub input: String,
    /// What the input is for.
    pub mode: Mode,
    /// Lines scrolled up from the bottom.
    pub scroll: usize,
    /// Who is typing where, until when.
    pub typing: HashMap<(ChatId, UserId), Instant>,
    /// Presence of contacts.
    pub presence: HashMap<UserId, bool>,
    /// A loud warning (identity change), until dismissed with Esc.
    pub banner: Option<String>,
    /// The last error or notice.
    pub notice: Option<String>,
    /// Whether the relay connection is up.
    pub online: bool,
    /// Display names.
    pub names: Names,
    /// Key bindings.
    pub keymap: Keymap,
    /// Set when the user quits.
    pub quit: bool,
    own_user: UserId,
    typing_sent: Option<Instant>,
}

impl App {
    /// Loads chats (creating the direct chat of every contact) with their
    /// unread counts and opens the first chat.
    pub fn new(client: &Client, names: Names, keymap: Keymap) -> Result<Self, ClientError> {
        for contact in client.contacts()? {
            client.direct_chat(contact.user_id)?;
        }
        let mut app = Self {
            chats: Vec::new(),
            selected: 0,
            messages: Vec::new(),
            results: None,
            input: String::new(),
            mode: Mode::Compose,
            scroll: 0,
            typing: HashMap::new(),
            presence: HashMap::new(),
            banner: None,
            notice: None,
            online: false,
            names,
            keymap,
            quit: false,
            own_user: client.account().user_id,
            typing_sent: None,
        };
        app.reload_chats(client)?;
        app.open_chat(client)?;
        Ok(app)
    }

    /// The open chat.
    pub fn current(&self) -> Option<&ChatEntry> {
        self.chats.get(self.selected)
    }

    /// Users typing in the open chat.
    pub fn typing_here(&self) -> Vec<String> {
        let Some(chat) = self.current() else {
            return Vec::new();
        };
        let now = Instant::now();
        self.typing
            .iter()
            .filter(|((c, _), until)| *c == chat.info.chat_id && **until > now)
            .map(|((_, user), _)| self.names.user(user))
            .collect()
    }

    fn reload_chats(&mut self, client: &Client) -> Result<(), ClientError> {
        let open = self.current().map(|c| c.info.chat_id);
        let mut chats: Vec<ChatEntry> = client
            .chats()?
            .into_iter()
            .map(|info| {
                let peer = match info.kind {
                    ChatKind::Direct => info.members.iter().find(|m| **m != self.own_user).copied(),
                    ChatKind::Group => None,
                };
                ChatEntry {
                    unread: info.unread,
                    peer,
                    info,
                }
            })
            .collect();
        chats.sort_by(|a, b| {
            (a.info.kind == ChatKind::Group, &a.info.title)
                .cmp(&(b.info.kind == ChatKind::Group, &b.info.title))
        });
        self.selected = open
            .and_then(|id| chats.iter().position(|c| c.info.chat_id == id))
            .unwrap_or(0);
        self.chats = chats;
        Ok(())
    }

    /// Reloads the open chat's messages and marks them read.
    fn open_chat(&mut self, client: &Client) -> Result<(), ClientError> {
        let Some(chat) = self.chats.get_mut(self.selected) else {
            self.messages.clear();
            return Ok(());
        };
        chat.unread = 0;
        let chat_id = chat.info.chat_id;
        let messages = client.messages(chat_id, None, HISTORY)?;
        self.messages = messages
            .into_iter()
            .map(|m| {
                let status = if m.outgoing {
                    client
                        .message_status(m.id)?
                        .into_iter()
                        .map(|(_, s)| s)
                        .min()
                } else {
                    None
                };
                let attachment = client.attachments(m.id)?.into_iter().next();
                Ok((m, status, attachment))
            })
            .collect::<Result<_, ClientError>>()?;
        let newest_incoming = self
            .messages
            .iter()
            .filter(|(m, _, _)| !m.outgoing)
            .filter_map(|(m, _, _)| m.seq)
            .max();
        if let Some(seq) = newest_incoming {
            client.mark_read(chat_id, seq)?;
        }
        Ok(())
    }

    /// Handles a client event.
    pub fn on_client(
        &mut self,
        client: &Client,
        event: ClientEvent,
        names: impl FnOnce() -> Option<Names>,
    ) -> Result<Effect, ClientError> {
        let open = self.current().map(|c| c.info.chat_id);
        match event {
            ClientEvent::Connected => {
                self.online = true;
                return Ok(Effect::SubscribePresence);
            }
            ClientEvent::Disconnected { .. } => self.online = false,
            ClientEvent::MessageReceived(message) => {
                if let Some(fresh) = names() {
                    self.names = fresh;
                }
                if !self.chats.iter().any(|c| c.info.chat_id == message.chat_id) {
                    self.reload_chats(client)?;
                }
                self.typing
                    .retain(|(c, u), _| !(*c == message.chat_id && *u == message.sender));
                if Some(message.chat_id) == open {
                    self.open_chat(client)?;
                } else {
                    self.reload_chats(client)?;
                }
                if !message.outgoing {
                    return Ok(Effect::Notify);
                }
            }
            ClientEvent::MessageStatus { chat_id, .. } if Some(chat_id) == open => {
                self.open_chat(client)?;
            }
            ClientEvent::SendFailed { reason, .. } => {
                self.notice = Some(format!("a message could not be sent: {reason}"));
            }
            ClientEvent::DecryptionFailed { sender, .. } => {
                self.notice = Some(format!(
                    "a message from {} could not be decrypted; the session is being repaired",
                    self.names.user(&sender)
                ));
            }
            ClientEvent::IdentityChanged {
                user_id,
                was_verified,
            } => {
                let name = self.names.user(&user_id);
                self.banner = Some(if was_verified {
                    format!(
                        "⚠ {name}'s IDENTITY CHANGED. Sending to {name} is blocked: compare safety numbers \
                         (`tern contact verify {name}`) and accept with --accept-change. Esc hides this."
                    )
                } else {
                    format!(
                        "⚠ {name}'s identity changed (new phone or reinstall?). Verify with \
                         `tern contact verify {name}`. Esc hides this."
                    )
                });
            }
            ClientEvent::ChatTitleChanged { chat_id, title, by } => {
                let old = self
                    .chats
                    .iter()
                    .find(|c| c.info.chat_id == chat_id)
                    .map(|c| c.info.title.clone());
                if by != self.own_user {
                    let by = self.names.user(&by);
                    self.banner = Some(renamed_notice(old.as_deref(), &title, &by));
                }
                self.reload_chats(client)?;
            }
            ClientEvent::MembersChanged { .. } => {
                self.reload_chats(client)?;
            }
            ClientEvent::ChatRead { chat_id, .. } if Some(chat_id) != open => {
                self.reload_chats(client)?;
            }
            ClientEvent::Typing {
                chat_id,
                user_id,
                active,
            } => {
                if active {
                    self.typing
                        .insert((chat_id, user_id), Instant::now() + TYPING_TTL);
                } else {
                    self.typing.remove(&(chat_id, user_id));
                }
            }
            ClientEvent::Presence {
                user_id, online, ..
            } => {
                self.presence.insert(user_id, online);
            }
            ClientEvent::Lagged { .. } => {
                self.reload_chats(client)?;
                self.open_chat(client)?;
            }
            _ => {}
        }
        Ok(Effect::None)
    }

    /// Drops expired typing indicators.
    pub fn on_tick(&mut self) {
        let now = Instant::now();
        self.typing.retain(|_, until| *until > now);
    }

    /// Reloads the open chat after an effect finished (or reports its failure).
    pub fn after_effect(
        &mut self,
        client: &Client,
        outcome: Result<String, ClientError>,
    ) -> Result<(), ClientError> {
        self.notice = Some(match outcome {
            Ok(done) => done,
            Err(e) => e.to_string(),
        });
        self.open_chat(client)
    }

    /// Handles a key press.
    pub fn on_key(&mut self, client: &Client, key: KeyEvent) -> Result<Effect, ClientError> {
        if key.kind == KeyEventKind::Release {
            return Ok(Effect::None);
        }
        match self.keymap.action(&key) {
            Some(Action::Quit) => self.quit = true,
            Some(Action::Send) => return self.submit(client),
            Some(Action::Newline) if self.mode == Mode::Compose => self.push_input('\n'),
            Some(Action::NextChat) => self.switch(client, 1)?,
            Some(Action::PrevChat) => self.switch(client, self.chats.len().saturating_sub(1))?,
            Some(Action::Search) => self.mode = Mode::Search { all: false },
            Some(Action::SearchAll) => self.mode = Mode::Search { all: true },
            Some(Action::ScrollUp) => self.scroll = self.scroll.saturating_add(SCROLL_STEP),
            Some(Action::ScrollDown) => self.scroll = self.scroll.saturating_sub(SCROLL_STEP),
            Some(Action::Newline) | None => self.edit(client, key),
        }
        Ok(Effect::None)
    }

    fn edit(&mut self, client: &Client, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {
                if self.mode != Mode::Compose || self.results.is_some() {
                    self.mode = Mode::Compose;
                    self.results = None;
                    self.input.clear();
                } else {
                    self.banner = None;
                    self.notice = None;
                }
            }
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                self.push_input(c);
                if self.mode == Mode::Compose {
                    self.announce_typing(client);
                }
            }
            _ => {}
        }
    }

    fn push_input(&mut self, c: char) {
        if self.input.len() < MAX_INPUT {
            self.input.push(c);
        }
    }

    fn announce_typing(&mut self, client: &Client) {
        let due = self
            .typing_sent
            .is_none_or(|at| at.elapsed() >= TYPING_RESEND);
        if let (true, Some(chat)) = (due, self.current()) {
            // Best effort: typing indicators are never queued.
            let _ = client.set_typing(chat.info.chat_id, true);
            self.typing_sent = Some(Instant::now());
        }
    }

    fn switch(&mut self, client: &Client, step: usize) -> Result<(), ClientError> {
        if self.chats.is_empty() {
            return Ok(());
        }
        self.selected = (self.selected + step) % self.chats.len();
        self.scroll = 0;
        self.results = None;
        self.typing_sent = None;
        self.open_chat(client)
    }

    fn submit(&mut self, client: &Client) -> Result<Effect, ClientError> {
        let text = std::mem::take(&mut self.input);
        match self.mode {
            Mode::Search { all } => {
                let mut query = SearchQuery::new(text.trim());
                query.prefix = true;
                query.limit = 100;
                if !all {
                    query.chat_id = self.current().map(|c| c.info.chat_id);
                }
                self.results = Some(client.search(query)?);
                self.mode = Mode::Compose;
            }
            Mode::Compose => {
                let Some(chat_id) = self.current().map(|c| c.info.chat_id) else {
                    self.notice =
                        Some("no chat: add a contact with `tern contact add NAME`".into());
                    return Ok(Effect::None);
                };
                if text.trim().is_empty() {
                    return Ok(Effect::None);
                }
                if let Some(path) = text.strip_prefix("/file ") {
                    self.notice = Some(format!("sending {}…", path.trim()));
                    return Ok(Effect::SendFile(chat_id, PathBuf::from(path.trim())));
                }
                if let Some(dir) = text.strip_prefix("/download") {
                    return Ok(self.download(dir.trim()));
                }
                match client.send_text(chat_id, text.clone()) {
                    Ok(_) => {
                        let _ = client.set_typing(chat_id, false);
                        self.typing_sent = None;
                        self.scroll = 0;
                        self.open_chat(client)?;
                    }
                    Err(ClientError::UntrustedIdentity) => {
                        self.input = text;
                        self.banner = Some(
                            "⚠ Not sent: a verified member's identity changed. Compare safety numbers \
                             (`tern contact verify NAME`) and accept with --accept-change."
                                .into(),
                        );
                    }
                    Err(e @ (ClientError::InvalidArgument(_) | ClientError::UnknownChat)) => {
                        self.input = text;
                        self.notice = Some(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Effect::None)
    }

    /// Downloads the newest attachment of the open chat not on disk yet.
    fn download(&mut self, dir: &str) -> Effect {
        let newest = self.messages.iter().rev().find_map(|(m, _, a)| {
            a.as_ref()
                .filter(|a| !m.outgoing && a.state != TransferState::Downloaded)
                .map(|_| m.id)
        });
        match newest {
            Some(id) => {
                self.notice = Some("downloading…".into());
                let dir = if dir.is_empty() { "." } else { dir };
                Effect::Download(id, PathBuf::from(dir))
            }
            None => {
                self.notice = Some("no attachment to download in this chat".into());
                Effect::None
            }
        }
    }
}
