//! Byte budgets for request bodies a peer makes us buffer.
//!
//! QUIC flow control bounds only the bytes a peer has sent and we have not
//! read yet; once a frame reader copies them into its own buffer, the
//! credit goes back to the peer. A [`ByteBudget`] bounds those copies: a
//! reader charges every byte of buffer it allocates for a frame body, and
//! the charge is returned when the last reference to that body is dropped.
//!
//! Budgets nest: a connection's budget inside a relay-wide one, so one peer
//! can neither exceed its own share nor the total. A child may have a
//! *floor*: the first bytes it holds do not count against its parent, so a
//! connection can always make small requests even while others have
//! exhausted the shared budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Which budget refused a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// The budget charged directly (a connection's share).
    #[error("the connection's request buffer budget is exhausted")]
    Own,
    /// An enclosing budget (the relay-wide total).
    #[error("the shared request buffer budget is exhausted")]
    Shared,
}

/// A limit on bytes held at once, optionally inside a parent budget.
#[derive(Debug)]
pub struct ByteBudget {
    limit: AtomicUsize,
    floor: usize,
    used: Mutex<usize>,
    parent: Option<Arc<ByteBudget>>,
}

impl ByteBudget {
    /// A top-level budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(limit),
            floor: 0,
            used: Mutex::new(0),
            parent: None,
        })
    }

    /// A budget of `limit` bytes inside `self`: what it holds beyond its
    /// first `floor` bytes also counts against `self`.
    pub fn child(self: &Arc<Self>, limit: usize, floor: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(limit),
            floor,
            used: Mutex::new(0),
            parent: Some(self.clone()),
        })
    }

    /// Changes the limit; charges already held stay valid.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes currently charged to this budget (its children's included,
    /// beyond their floors).
    pub fn used(&self) -> usize {
        *self.lock()
    }

    /// An empty charge against this budget, grown with
    /// [`Reservation::grow`].
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What of `used` counts against the parent.
    fn excess(&self, used: usize) -> usize {
        used.saturating_sub(self.floor)
    }

    /// Charges `n` bytes here and what exceeds the floor in the parent, or
    /// nothing at all.
    fn charge(&self, n: usize) -> Result<(), Exhausted> {
        let mut used = self.lock();
        let limit = self.limit.load(Ordering::Relaxed);
        let new = used
            .checked_add(n)
            .filter(|&total| total <= limit)
            .ok_or(Exhausted::Own)?;
        if let Some(parent) = &self.parent {
            let delta = self.excess(new) - self.excess(*used);
            if delta > 0 {
                parent.charge(delta).map_err(|_| Exhausted::Shared)?;
            }
        }
        *used = new;
        Ok(())
    }

    fn release(&self, n: usize) {
        let mut used = self.lock();
        let new = used.saturating_sub(n);
        if let Some(parent) = &self.parent {
            parent.release(self.excess(*used) - self.excess(new));
        }
        *used = new;
    }
}

/// Bytes charged to a budget, returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Reservation {
    /// Charges `n` more bytes; on refusal nothing changes.
    pub fn grow(&mut self, n: usize) -> Result<(), Exhausted> {
        self.budget.charge(n)?;
        self.bytes += n;
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_count_in_every_ancestor_and_come_back_on_drop() {
        let total = ByteBudget::new(100);
        let conn = total.child(60, 0);
        let mut r = conn.reservation();
        r.grow(50).unwrap();
        assert_eq!((conn.used(), total.used()), (50, 50));
        assert_eq!(r.grow(20), Err(Exhausted::Own));
        assert_eq!((conn.used(), total.used()), (50, 50));
        drop(r);
        assert_eq!((conn.used(), total.used()), (0, 0));
    }

    #[test]
    fn a_full_parent_refuses_without_leaking_the_child_charge() {
        let total = ByteBudget::new(100);
        let a = total.child(80, 0);
        let b = total.child(80, 0);
        let mut ra = a.reservation();
        ra.grow(70).unwrap();
        let mut rb = b.reservation();
        assert_eq!(rb.grow(40), Err(Exhausted::Shared));
        assert_eq!((b.used(), total.used()), (0, 70));
        rb.grow(30).unwrap();
        assert_eq!(total.used(), 100);
    }

    #[test]
    fn bytes_within_the_floor_do_not_count_against_the_parent() {
        let total = ByteBudget::new(10);
        let a = total.child(100, 0);
        let b = total.child(100, 20);
        let mut ra = a.reservation();
        ra.grow(10).unwrap();
        let mut rb = b.reservation();
        rb.grow(15).unwrap();
        assert_eq!(total.used(), 10);
        assert_eq!(rb.grow(10), Err(Exhausted::Shared));
        drop(ra);
        rb.grow(10).unwrap();
        assert_eq!((b.used(), total.used()), (25, 5));
        drop(rb);
        assert_eq!((b.used(), total.used()), (0, 0));
    }

    #[test]
    fn a_raised_limit_admits_more() {
        let total = ByteBudget::new(1000);
        let conn = total.child(10, 0);
        let mut r = conn.reservation();
        assert_eq!(r.grow(11), Err(Exhausted::Own));
        conn.set_limit(100);
        r.grow(11).unwrap();
        assert_eq!(r.bytes(), 11);
    }
}
