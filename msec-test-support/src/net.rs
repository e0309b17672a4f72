//! Loopback listeners for tests.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds 127.0.0.1 on a free port.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

/// Binds 127.0.0.1 on a free port for a tonic server (`serve_with_incoming`).
pub async fn tonic_incoming() -> (tonic::transport::server::TcpIncoming, SocketAddr) {
    let (l, a) = listener().await;
    (tonic::transport::server::TcpIncoming::from(l), a)
}
