//! Per-chat delivery order on one node of a cluster.
//!
//! Entries of one chat are committed by any node, one transaction at a
//! time (the chat's row lock), and reach this node as local commits or bus
//! notices — possibly late, twice, or never. A device must receive a
//! chat's entries in seq order without holes: it moves its cursor to each
//! entry it processes, so an entry pushed after a later one would be
//! skipped. The sequencer remembers the last seq this node has handled per
//! chat and admits an entry only when it is the next one; anything else is
//! a duplicate (dropped) or a gap (the recipients' devices are told to
//! sync, which reads the log from their cursors, where every committed
//! entry is). A chat the sequencer does not know yet counts as a gap
//! unless the entry is its first: the node cannot tell what its devices
//! have seen.

use std::collections::HashMap;

use tern_protocol::ChatId;

/// What to do with a committed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The chat's next entry: push it to the recipients' devices.
    Push,
    /// Already handled (a duplicate or late notice): drop it.
    Duplicate,
    /// Entries before it were not seen here: the recipients' devices sync.
    Gap,
}

/// The last seq handled per chat, for at most `max_chats` chats.
#[derive(Debug)]
pub(crate) struct Sequencer {
    last: HashMap<ChatId, u64>,
    max_chats: usize,
}

impl Sequencer {
    /// A sequencer that forgets everything when it knows `max_chats` chats
    /// (the next entry of each chat is then a gap: bounded memory at the
    /// price of one sync).
    pub(crate) fn new(max_chats: usize) -> Self {
        Self {
            last: HashMap::new(),
            max_chats: max_chats.max(1),
        }
    }

    /// Decides about entry `seq` of `chat` and records it as handled.
    pub(crate) fn admit(&mut self, chat: ChatId, seq: u64) -> Admit {
        let last = self.last.get(&chat).copied();
        let verdict = match last {
            Some(last) if seq <= last => return Admit::Duplicate,
            Some(last) if seq == last + 1 => Admit::Push,
            None if seq == 1 => Admit::Push,
            _ => Admit::Gap,
        };
        if last.is_none() && self.last.len() >= self.max_chats {
            self.last.clear();
        }
        self.last.insert(chat, seq);
        verdict
    }

    /// Forgets every chat (after the bus was down: notices may be lost).
    pub(crate) fn forget(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ChatId = ChatId([1; 16]);
    const D: ChatId = ChatId([2; 16]);

    #[test]
    fn entries_in_order_are_pushed_and_repeats_dropped() {
        let mut s = Sequencer::new(10);
        assert_eq!(s.admit(C, 1), Admit::Push);
        assert_eq!(s.admit(C, 2), Admit::Push);
        assert_eq!(s.admit(C, 2), Admit::Duplicate);
        assert_eq!(s.admit(C, 1), Admit::Duplicate);
        assert_eq!(s.admit(C, 3), Admit::Push);
    }

    #[test]
    fn a_missing_entry_is_a_gap_and_arrives_late_as_a_duplicate() {
        let mut s = Sequencer::new(10);
        assert_eq!(s.admit(C, 1), Admit::Push);
        assert_eq!(s.admit(C, 3), Admit::Gap);
        assert_eq!(s.admit(C, 2), Admit::Duplicate, "the sync delivered it");
        assert_eq!(s.admit(C, 4), Admit::Push);
    }

    #[test]
    fn an_unknown_chat_is_a_gap_unless_the_entry_is_its_first() {
        let mut s = Sequencer::new(10);
        assert_eq!(s.admit(C, 7), Admit::Gap);
        assert_eq!(s.admit(C, 8), Admit::Push);
        assert_eq!(s.admit(D, 1), Admit::Push);
    }

    #[test]
    fn memory_is_bounded_by_forgetting() {
        let mut s = Sequencer::new(1);
        assert_eq!(s.admit(C, 1), Admit::Push);
        assert_eq!(s.admit(D, 1), Admit::Push);
        assert_eq!(s.last.len(), 1);
        assert_eq!(s.admit(C, 2), Admit::Gap, "C was forgotten");
        s.forget();
        assert_eq!(s.admit(C, 3), Admit::Gap);
    }
}
