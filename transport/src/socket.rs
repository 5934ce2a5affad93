//! UDP sockets for QUIC endpoints, with kernel buffers sized for bursts.
//!
//! The Linux default receive buffer (about 208 KiB) overflows when a relay
//! fans a group message out to hundreds of connections at once, or when a
//! busy client endpoint receives those bursts: the kernel then drops
//! datagrams, and QUIC only recovers them after a loss-detection timeout,
//! which turns a sub-millisecond delivery into a 100 ms one. Endpoints are
//! therefore bound here with larger buffers. The kernel caps the request
//! at `net.core.rmem_max` / `wmem_max`; a smaller grant is not an error.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer size requested for every endpoint socket.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Binds a UDP socket at `addr` with [`UDP_BUFFER_BYTES`] buffers.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack when bound to the IPv6 wildcard; irrelevant otherwise.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: the kernel clamps to its maximum, and a smaller buffer
    // only costs performance.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        bind_udp(addr)?,
        runtime,
    )
}

/// A QUIC server endpoint listening on `addr` (must run inside tokio).
pub fn server_endpoint(
    config: quinn::ServerConfig,
    addr: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    endpoint(addr, Some(config))
}

/// A QUIC client endpoint bound to `addr` (must run inside tokio).
pub fn client_endpoint(addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    endpoint(addr, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_a_larger_receive_buffer_than_the_default() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        // Linux's default is 212,992 bytes; any grant above it shows the
        // request was applied (the exact value depends on rmem_max).
        assert!(granted > 212_992, "granted {granted}");
    }
}
