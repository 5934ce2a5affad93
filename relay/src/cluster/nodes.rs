//! Who is online on the other nodes of a cluster, and which nodes are
//! alive. Fed by presence changes, heartbeats and snapshots from the bus;
//! a node silent for [`NODE_TIMEOUT`] is taken for dead and its accounts
//! offline. Sans-IO: time is passed in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tern_protocol::UserId;

/// Silence after which a node counts as dead (three heartbeats missed).
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Node {
    heard: Instant,
    online: HashSet<UserId>,
}

/// The other nodes and their online accounts.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    nodes: HashMap<String, Node>,
}

impl Nodes {
    fn node(&mut self, id: &str, now: Instant) -> &mut Node {
        let node = self.nodes.entry(id.to_owned()).or_insert_with(|| Node {
            heard: now,
            online: HashSet::new(),
        });
        node.heard = now;
        node
    }

    /// Whether `user` is online on any other live node.
    pub(crate) fn is_online(&self, user: &UserId) -> bool {
        self.nodes.values().any(|n| n.online.contains(user))
    }

    /// Records that `user` came online or went offline on node `id`.
    pub(crate) fn changed(&mut self, id: &str, user: UserId, online: bool, now: Instant) {
        let node = self.node(id, now);
        if online {
            node.online.insert(user);
        } else {
            node.online.remove(&user);
        }
    }

    /// Records a heartbeat; true when the node's count of online accounts
    /// differs from ours (ask it for a snapshot).
    pub(crate) fn heartbeat(&mut self, id: &str, online_accounts: u64, now: Instant) -> bool {
        self.node(id, now).online.len() as u64 != online_accounts
    }

    /// Replaces node `id`'s online accounts; returns the accounts whose
    /// state on that node changed.
    pub(crate) fn snapshot(
        &mut self,
        id: &str,
        users: HashSet<UserId>,
        now: Instant,
    ) -> Vec<UserId> {
        let node = self.node(id, now);
        let changed = node.online.symmetric_difference(&users).copied().collect();
        node.online = users;
        changed
    }

    /// Drops node `id` (it left, or died); returns its online accounts.
    pub(crate) fn remove(&mut self, id: &str) -> Vec<UserId> {
        self.nodes
            .remove(id)
            .map(|n| n.online.into_iter().collect())
            .unwrap_or_default()
    }

    /// Drops the nodes silent since before `now - NODE_TIMEOUT`; returns
    /// their online accounts.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<UserId> {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.heard) > NODE_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        dead.iter().flat_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: UserId = UserId([1; 16]);
    const B: UserId = UserId([2; 16]);

    #[test]
    fn an_account_is_online_while_any_node_has_it() {
        let t = Instant::now();
        let mut nodes = Nodes::default();
        nodes.changed("n1", A, true, t);
        nodes.changed("n2", A, true, t);
        nodes.changed("n1", A, false, t);
        assert!(nodes.is_online(&A));
        nodes.changed("n2", A, false, t);
        assert!(!nodes.is_online(&A));
    }

    #[test]
    fn a_silent_node_dies_with_its_accounts() {
        let t = Instant::now();
        let mut nodes = Nodes::default();
        nodes.changed("n1", A, true, t);
        nodes.changed("n2", B, true, t);
        let later = t + NODE_TIMEOUT + Duration::from_millis(1);
        assert!(!nodes.heartbeat("n2", 1, later));
        assert_eq!(nodes.expire(later), vec![A]);
        assert!(!nodes.is_online(&A));
        assert!(nodes.is_online(&B));
    }

    #[test]
    fn a_heartbeat_with_another_count_asks_for_a_snapshot() {
        let t = Instant::now();
        let mut nodes = Nodes::default();
        nodes.changed("n1", A, true, t);
        assert!(nodes.heartbeat("n1", 2, t));
        let changed = nodes.snapshot("n1", [B].into_iter().collect(), t);
        assert_eq!(changed.len(), 2);
        assert!(!nodes.heartbeat("n1", 1, t));
        assert!(nodes.is_online(&B) && !nodes.is_online(&A));
    }
}
