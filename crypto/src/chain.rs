//! Symmetric-key chains (Signal's KDF_CK) and bounded stores of skipped message keys,
//! shared by the Double Ratchet's receiving chains and by sender keys.

use std::collections::BTreeMap;

use super::codec::{DecodeError, Reader, Writer};
use super::consts::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS_PER_CHAIN};
use super::error::CryptoError;
use super::primitives::{Secret32, chain_step, next_chain_key};

/// A chain key and the number of the next message it derives.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub(crate) key: Secret32,
    pub(crate) index: u32,
}

/// Keys derived while moving a chain forward, not yet committed.
pub(crate) struct Advance {
    /// Keys of the messages jumped over (only the newest `MAX_SKIPPED_KEYS_PER_CHAIN`).
    skipped: Vec<(u32, Secret32)>,
    /// The chain after the move.
    chain: Chain,
}

impl Chain {
    pub(crate) fn new(key: Secret32) -> Self {
        Self { key, index: 0 }
    }

    /// Derives the message-key seed for the current index and the chain one step on.
    pub(crate) fn step(&self) -> Result<(Secret32, Chain), CryptoError> {
        let index = self
            .index
            .checked_add(1)
            .ok_or(CryptoError::ChainExhausted)?;
        let (seed, key) = chain_step(&self.key);
        Ok((seed, Chain { key, index }))
    }

    /// Moves the chain to `target` without mutating it, keeping the keys skipped on the way.
    pub(crate) fn skip_to(&self, target: u32) -> Result<Advance, CryptoError> {
        let jump = target.saturating_sub(self.index);
        if jump > MAX_FORWARD_JUMP {
            return Err(CryptoError::ForwardJumpTooLarge {
                jump,
                max: MAX_FORWARD_JUMP,
            });
        }
        let kept_from = target.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
        let mut skipped = Vec::with_capacity(jump.min(MAX_SKIPPED_KEYS_PER_CHAIN as u32) as usize);
        let mut chain = self.clone();
        while chain.index < target {
            if chain.index >= kept_from {
                let (seed, next) = chain.step()?;
                skipped.push((chain.index, seed));
                chain = next;
            } else {
                chain = Chain {
                    key: next_chain_key(&chain.key),
                    index: chain.index + 1,
                };
            }
        }
        Ok(Advance { skipped, chain })
    }

    pub(crate) fn write(&self, writer: &mut Writer) {
        writer.bytes(self.key.as_bytes()).u32(self.index);
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            key: Secret32::read(reader, "chain key")?,
            index: reader.u32("chain index")?,
        })
    }
}

/// How a message key was found; committing it updates the chain.
pub(crate) enum KeyLookup {
    /// A stored skipped key, to delete.
    Skipped(u32),
    /// A move of the chain past the message, to apply.
    Advance(Advance),
}

/// A receiving chain with the keys of messages skipped on it (oldest evicted first).
#[derive(Debug, Clone)]
pub(crate) struct ReceivingChain {
    chain: Chain,
    skipped: BTreeMap<u32, Secret32>,
}

impl ReceivingChain {
    pub(crate) fn new(chain: Chain) -> Self {
        Self {
            chain,
            skipped: BTreeMap::new(),
        }
    }

    /// The message-key seed for message `counter`, without changing anything.
    pub(crate) fn message_key(&self, counter: u32) -> Result<(Secret32, KeyLookup), CryptoError> {
        if counter < self.chain.index {
            let seed = self
                .skipped
                .get(&counter)
                .ok_or(CryptoError::MessageKeyUnavailable { index: counter })?;
            return Ok((seed.clone(), KeyLookup::Skipped(counter)));
        }
        let mut advance = self.chain.skip_to(counter)?;
        let (seed, next) = advance.chain.step()?;
        advance.chain = next;
        Ok((seed, KeyLookup::Advance(advance)))
    }

    /// A move to `target` (for the tail of a chain that a DH step closes).
    pub(crate) fn skip_to(&self, target: u32) -> Result<Advance, CryptoError> {
        self.chain.skip_to(target)
    }

    /// Applies what [`Self::message_key`] found.
    pub(crate) fn commit(&mut self, lookup: KeyLookup) {
        match lookup {
            KeyLookup::Skipped(counter) => {
                self.skipped.remove(&counter);
            }
            KeyLookup::Advance(advance) => self.apply(advance),
        }
    }

    /// Applies a move, evicting the oldest skipped keys beyond the bound.
    pub(crate) fn apply(&mut self, advance: Advance) {
        if advance.chain.index > self.chain.index {
            self.chain = advance.chain;
        }
        self.skipped.extend(advance.skipped);
        while self.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN {
            self.skipped.pop_first();
        }
    }

    pub(crate) fn write(&self, writer: &mut Writer) {
        self.chain.write(writer);
        writer.count(self.skipped.len());
        for (index, seed) in &self.skipped {
            writer.u32(*index).bytes(seed.as_bytes());
        }
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let chain = Chain::read(reader)?;
        let count = reader.count("skipped keys", MAX_SKIPPED_KEYS_PER_CHAIN)?;
        let mut skipped = BTreeMap::new();
        for _ in 0..count {
            let index = reader.u32("skipped index")?;
            let seed = Secret32::read(reader, "skipped key")?;
            if index >= chain.index || skipped.insert(index, seed).is_some() {
                return Err(DecodeError::InvalidValue("skipped index"));
            }
        }
        Ok(Self { chain, skipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_keys_are_bounded_and_usable_once() {
        let mut chain = ReceivingChain::new(Chain::new(Secret32::from_bytes([1; 32])));
        let (_, lookup) = chain
            .message_key(MAX_SKIPPED_KEYS_PER_CHAIN as u32 + 10)
            .unwrap();
        chain.commit(lookup);
        assert_eq!(chain.skipped.len(), MAX_SKIPPED_KEYS_PER_CHAIN);
        assert!(matches!(
            chain.message_key(5),
            Err(CryptoError::MessageKeyUnavailable { index: 5 })
        ));
        let (seed, lookup) = chain.message_key(20).unwrap();
        chain.commit(lookup);
        assert!(chain.message_key(20).is_err());
        let fresh = Chain::new(Secret32::from_bytes([1; 32]))
            .skip_to(20)
            .unwrap();
        assert_eq!(fresh.chain.step().unwrap().0, seed);
        assert!(matches!(
            chain.message_key(MAX_FORWARD_JUMP + 3000),
            Err(CryptoError::ForwardJumpTooLarge { .. })
        ));
    }
}
