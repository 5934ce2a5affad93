//! What `tern chat` showed last, per chat, so that unread counts survive a
//! restart. Kept in `chat.seen` in the home: one `CHAT_ID_HEX SEQ` per line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tern_core::client::ChatId;

/// Largest file read (a line per chat).
const MAX_LEN: u64 = 1 << 20;

/// The highest relay seq shown per chat.
pub struct Seen {
    path: PathBuf,
    marks: BTreeMap<ChatId, u64>,
}

impl Seen {
    /// Reads the file; a missing or unreadable one means nothing was seen.
    pub fn load(path: PathBuf) -> Self {
        let text = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() <= MAX_LEN)
            .and_then(|_| std::fs::read_to_string(&path).ok())
            .unwrap_or_default();
        Self {
            marks: parse(&text),
            path,
        }
    }

    /// The highest seq shown in `chat`.
    pub fn get(&self, chat: &ChatId) -> u64 {
        self.marks.get(chat).copied().unwrap_or(0)
    }

    /// Records that `chat` was shown up to `seq` (best effort: a failed write
    /// only makes old messages count as unread next time).
    pub fn set(&mut self, chat: ChatId, seq: u64) {
        if self.get(&chat) >= seq {
            return;
        }
        self.marks.insert(chat, seq);
        let text: String = self
            .marks
            .iter()
            .map(|(chat, seq)| format!("{} {seq}\n", hex::encode(chat)))
            .collect();
        let tmp = self.path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

fn parse(text: &str) -> BTreeMap<ChatId, u64> {
    text.lines()
        .filter_map(|line| {
            let (chat, seq) = line.split_once(' ')?;
            let mut id = ChatId::default();
            hex::decode_to_slice(chat, &mut id).ok()?;
            Some((id, seq.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_a_reload_and_ignore_garbage() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("chat.seen");
        let mut seen = Seen::load(path.clone());
        seen.set([1; 16], 7);
        seen.set([1; 16], 3);
        seen.set([2; 16], 9);
        let again = Seen::load(path.clone());
        assert_eq!(again.get(&[1; 16]), 7);
        assert_eq!(again.get(&[2; 16]), 9);
        assert_eq!(again.get(&[3; 16]), 0);
        std::fs::write(&path, "zz 1\n0101 x\nnot a line\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(Seen::load(path).marks.is_empty());
    }
}
