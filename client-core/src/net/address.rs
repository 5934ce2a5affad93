//! Where the relay is: one address, or the nodes of a cluster that share
//! one certificate, tried in turn.

use std::net::{SocketAddr, ToSocketAddrs};

use tern_transport::TrustPolicy;

/// Where the relay is and how to trust it.
#[derive(Debug, Clone)]
pub struct RelayAddress {
    /// UDP address of the relay (the first node of a cluster).
    pub addr: SocketAddr,
    /// Other nodes of the same cluster, presenting the same certificate:
    /// when a node does not answer, the client tries the next one.
    pub fallbacks: Vec<SocketAddr>,
    /// TLS server name (`tern-relay` for self-signed relays).
    pub server_name: String,
    /// Pinned fingerprint or certificate roots.
    pub trust: TrustPolicy,
}

impl RelayAddress {
    /// A relay at one address.
    pub fn new(addr: SocketAddr, server_name: impl Into<String>, trust: TrustPolicy) -> Self {
        Self {
            addr,
            fallbacks: Vec::new(),
            server_name: server_name.into(),
            trust,
        }
    }

    /// Every node: [`Self::addr`], then [`Self::fallbacks`].
    pub fn nodes(&self) -> Vec<SocketAddr> {
        let mut nodes = Vec::with_capacity(1 + self.fallbacks.len());
        nodes.push(self.addr);
        nodes.extend(&self.fallbacks);
        nodes
    }
}

/// The nodes a relay specification names: comma-separated `HOST:PORT`s, a
/// host name counting for every address it resolves to; in order, without
/// repeats. Fails on an address that does not resolve, or when none is
/// left.
pub fn resolve_nodes(spec: &str) -> Result<Vec<SocketAddr>, String> {
    let mut nodes: Vec<SocketAddr> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let resolved = part
            .to_socket_addrs()
            .map_err(|e| format!("relay address {part:?}: {e}"))?;
        for addr in resolved {
            if !nodes.contains(&addr) {
                nodes.push(addr);
            }
        }
    }
    if nodes.is_empty() {
        return Err(format!("relay address {spec:?} names no node"));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_every_node_once_in_order() {
        let nodes = resolve_nodes("127.0.0.1:1, 127.0.0.1:2,127.0.0.1:1").unwrap();
        let ports: Vec<u16> = nodes.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [1, 2]);
        assert!(resolve_nodes(" , ").is_err());
        assert!(resolve_nodes("127.0.0.1").is_err(), "no port");
    }
}
