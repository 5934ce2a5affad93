//! Per-chat delivery order on one node of a cluster.
//!
//! Entries of one chat are committed by any node, one transaction at a
//! time (the chat's row lock), and reach this node as local commits or bus
//! notices — possibly late, twice, or never. A device must receive a
//! chat's entries in seq order without holes: it moves its cursor to each
//! entry it processes, so an entry pushed after a later one would be
//! skipped. The sequencer remembers the last seq this node has handled per
//! chat and admits an entry when it is the next one; an earlier one is a
//! duplicate (dropped).
//!
//! An entry that comes before its predecessor is usually racing it: two
//! nodes committed one after the other in the same chat, and the second
//! node's notice overtook the first node's (or this node's own commit
//! reply). So it is held, for at most [`HOLD`]: when the predecessor
//! arrives, both go out in order; when it does not, the held entries are a
//! gap — the recipients' devices are told to sync, which reads the log
//! from their cursors, where every committed entry is. A chat the
//! sequencer does not know yet is a gap at once unless the entry is its
//! first: the node cannot tell what its devices have seen.
//!
//! Sans-IO: the caller passes the time and runs [`Sequencer::release_overdue`]
//! regularly (every few milliseconds while [`Sequencer::holds_any`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tern_protocol::ChatId;

/// Longest an entry waits for its predecessor before its recipients sync.
pub(crate) const HOLD: Duration = Duration::from_millis(50);
/// Most entries held at once, over all chats; an entry beyond makes its
/// chat's held entries a gap (bounded memory).
const MAX_HELD: usize = 4096;

/// What to do with a committed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admit<T> {
    /// The chat's next entry: push it to the recipients' devices.
    Push(T),
    /// Entries before it were not seen here: the recipients' devices sync.
    Gap(T),
}

/// Entries of one chat waiting for their predecessor.
#[derive(Debug)]
struct Held<T> {
    /// When the chat's first waiting entry arrived.
    since: Instant,
    /// By seq.
    entries: BTreeMap<u64, T>,
}

/// The last seq handled per chat, for at most `max_chats` chats, and the
/// entries waiting for their predecessors.
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    last: HashMap<ChatId, u64>,
    held: HashMap<ChatId, Held<T>>,
    held_count: usize,
    max_chats: usize,
}

impl<T> Sequencer<T> {
    /// A sequencer that forgets everything when it knows `max_chats` chats
    /// (the next entry of each chat is then a gap: bounded memory at the
    /// price of one sync).
    pub(crate) fn new(max_chats: usize) -> Self {
        Self {
            last: HashMap::new(),
            held: HashMap::new(),
            held_count: 0,
            max_chats: max_chats.max(1),
        }
    }

    /// Takes entry `seq` of `chat` (`item`) at `now`; appends to `out`, in
    /// order, what may go out now: this entry, and held ones it unblocks.
    pub(crate) fn admit(
        &mut self,
        chat: ChatId,
        seq: u64,
        item: T,
        now: Instant,
        out: &mut Vec<Admit<T>>,
    ) {
        match self.last.get(&chat).copied() {
            Some(last) if seq <= last => {}
            Some(last) if seq == last + 1 => {
                out.push(Admit::Push(item));
                self.last.insert(chat, seq);
                self.release_followers(chat, out);
            }
            Some(_) => self.hold(chat, seq, item, now, out),
            None => {
                if self.last.len() >= self.max_chats {
                    self.forget(out);
                }
                self.last.insert(chat, seq);
                out.push(match seq {
                    1 => Admit::Push(item),
                    _ => Admit::Gap(item),
                });
            }
        }
    }

    /// Gives up on the chats whose entries have waited [`HOLD`]: they are
    /// gaps.
    pub(crate) fn release_overdue(&mut self, now: Instant, out: &mut Vec<Admit<T>>) {
        let overdue: Vec<ChatId> = self
            .held
            .iter()
            .filter(|(_, held)| now.saturating_duration_since(held.since) >= HOLD)
            .map(|(chat, _)| *chat)
            .collect();
        for chat in overdue {
            self.give_up(chat, out);
        }
    }

    /// Whether entries are waiting for their predecessors.
    pub(crate) fn holds_any(&self) -> bool {
        self.held_count > 0
    }

    /// Forgets every chat (after the bus was down: notices may be lost);
    /// held entries are gaps.
    pub(crate) fn forget(&mut self, out: &mut Vec<Admit<T>>) {
        let chats: Vec<ChatId> = self.held.keys().copied().collect();
        for chat in chats {
            self.give_up(chat, out);
        }
        self.last.clear();
    }

    fn hold(&mut self, chat: ChatId, seq: u64, item: T, now: Instant, out: &mut Vec<Admit<T>>) {
        let held = self.held.entry(chat).or_insert_with(|| Held {
            since: now,
            entries: BTreeMap::new(),
        });
        if held.entries.insert(seq, item).is_none() {
            self.held_count += 1;
        }
        if self.held_count > MAX_HELD {
            self.give_up(chat, out);
        }
    }

    /// After `chat`'s last seq moved: pushes the held entries that now
    /// follow it, drops those it passed.
    fn release_followers(&mut self, chat: ChatId, out: &mut Vec<Admit<T>>) {
        let (Some(held), Some(last)) = (self.held.get_mut(&chat), self.last.get_mut(&chat)) else {
            return;
        };
        while let Some(first) = held.entries.first_entry() {
            let seq = *first.key();
            if seq > *last + 1 {
                break;
            }
            let item = first.remove();
            self.held_count -= 1;
            if seq == *last + 1 {
                *last = seq;
                out.push(Admit::Push(item));
            }
        }
        if held.entries.is_empty() {
            self.held.remove(&chat);
        }
    }

    /// The held entries of `chat` are a gap; its last seq is the highest.
    fn give_up(&mut self, chat: ChatId, out: &mut Vec<Admit<T>>) {
        let Some(held) = self.held.remove(&chat) else {
            return;
        };
        self.held_count -= held.entries.len();
        for (seq, item) in held.entries {
            self.last.insert(chat, seq);
            out.push(Admit::Gap(item));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ChatId = ChatId([1; 16]);
    const D: ChatId = ChatId([2; 16]);

    /// A sequencer of seqs, and what it let out.
    struct Run {
        s: Sequencer<u64>,
        t0: Instant,
    }

    impl Run {
        fn new(max_chats: usize) -> Self {
            Self {
                s: Sequencer::new(max_chats),
                t0: Instant::now(),
            }
        }

        fn admit(&mut self, chat: ChatId, seq: u64, at_ms: u64) -> Vec<Admit<u64>> {
            let mut out = Vec::new();
            let now = self.t0 + Duration::from_millis(at_ms);
            self.s.admit(chat, seq, seq, now, &mut out);
            out
        }

        fn overdue(&mut self, at_ms: u64) -> Vec<Admit<u64>> {
            let mut out = Vec::new();
            let now = self.t0 + Duration::from_millis(at_ms);
            self.s.release_overdue(now, &mut out);
            out
        }
    }

    use Admit::{Gap, Push};

    #[test]
    fn entries_in_order_are_pushed_and_repeats_dropped() {
        let mut r = Run::new(10);
        assert_eq!(r.admit(C, 1, 0), [Push(1)]);
        assert_eq!(r.admit(C, 2, 0), [Push(2)]);
        assert_eq!(r.admit(C, 2, 0), []);
        assert_eq!(r.admit(C, 1, 0), []);
        assert_eq!(r.admit(C, 3, 0), [Push(3)]);
    }

    #[test]
    fn an_entry_that_overtook_its_predecessor_waits_for_it() {
        let mut r = Run::new(10);
        r.admit(C, 1, 0);
        assert_eq!(r.admit(C, 3, 0), []);
        assert_eq!(r.admit(C, 4, 1), []);
        assert!(r.s.holds_any());
        assert_eq!(r.overdue(HOLD.as_millis() as u64 - 1), []);
        assert_eq!(r.admit(C, 2, 5), [Push(2), Push(3), Push(4)]);
        assert!(!r.s.holds_any());
        assert_eq!(r.admit(C, 5, 6), [Push(5)]);
    }

    #[test]
    fn a_predecessor_that_never_comes_is_a_gap_after_the_hold() {
        let mut r = Run::new(10);
        r.admit(C, 1, 0);
        r.admit(D, 1, 0);
        assert_eq!(r.admit(C, 3, 10), []);
        assert_eq!(r.admit(D, 5, 40), []);
        let hold = HOLD.as_millis() as u64;
        assert_eq!(
            r.overdue(10 + hold),
            [Gap(3)],
            "D has not waited long enough"
        );
        assert_eq!(r.admit(C, 2, 10 + hold), [], "the sync delivered it");
        assert_eq!(r.admit(C, 4, 10 + hold), [Push(4)]);
        assert_eq!(r.overdue(40 + hold), [Gap(5)]);
        assert!(!r.s.holds_any());
    }

    #[test]
    fn held_duplicates_and_passed_entries_go_once() {
        let mut r = Run::new(10);
        r.admit(C, 1, 0);
        assert_eq!(r.admit(C, 4, 0), []);
        assert_eq!(r.admit(C, 4, 0), []);
        assert_eq!(r.admit(C, 3, 0), []);
        assert_eq!(r.admit(C, 2, 0), [Push(2), Push(3), Push(4)]);
        assert_eq!(r.s.held_count, 0);
    }

    #[test]
    fn an_unknown_chat_is_a_gap_unless_the_entry_is_its_first() {
        let mut r = Run::new(10);
        assert_eq!(r.admit(C, 7, 0), [Gap(7)]);
        assert_eq!(r.admit(C, 8, 0), [Push(8)]);
        assert_eq!(r.admit(D, 1, 0), [Push(1)]);
    }

    #[test]
    fn memory_is_bounded_by_forgetting_and_by_giving_up() {
        let mut r = Run::new(1);
        r.admit(C, 1, 0);
        assert_eq!(r.admit(C, 3, 0), []);
        assert_eq!(
            r.admit(D, 1, 0),
            [Gap(3), Push(1)],
            "C forgotten, its wait given up"
        );
        assert_eq!(r.s.last.len(), 1);
        assert_eq!(r.admit(C, 4, 0), [Gap(4)], "C was forgotten");

        let mut r = Run::new(10);
        r.admit(C, 1, 0);
        for seq in 3..MAX_HELD as u64 + 3 {
            assert_eq!(r.admit(C, seq, 0), []);
        }
        let given_up = r.admit(C, MAX_HELD as u64 + 3, 0);
        assert_eq!(given_up.len(), MAX_HELD + 1);
        assert!(given_up.iter().all(|a| matches!(a, Gap(_))));
        assert!(!r.s.holds_any());
    }
}
