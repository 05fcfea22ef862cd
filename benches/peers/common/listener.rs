//! The per-worker listener of the thread-per-core peers: SO_REUSEPORT, so that each worker
//! binds its own socket on the same port and the kernel spreads connections over them, and
//! SO_REUSEADDR, so that a restart binds despite the last run's TIME_WAIT sockets.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

pub fn reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
