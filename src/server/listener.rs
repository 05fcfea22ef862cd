//! Listening sockets: one per shard, all bound to the same address with SO_REUSEPORT, so
//! the kernel spreads new connections over the shards and no accept thread is shared.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` SO_REUSEPORT listeners on `addr`. With port 0 the first picks an
/// ephemeral port and the others bind that same port.
pub(crate) fn bind_reuseport(addr: SocketAddr, count: usize, backlog: u32) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        let listener: TcpListener = socket.into();
        if addr.port() == 0 {
            addr = listener.local_addr()?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listeners = bind_reuseport("127.0.0.1:0".parse().expect("addr"), 2, 16).expect("bind");
        let addr = listeners[0].local_addr().expect("addr");
        assert_eq!(listeners[1].local_addr().expect("addr"), addr, "one port for every shard");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        // Either listener may get the connection (SO_REUSEPORT spreads them).
        let accepted = (0..400)
            .find_map(|_| {
                let conn = listeners.iter().find_map(|l| l.accept().ok());
                if conn.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                conn
            })
            .expect("accepted within 2 s")
            .0;
        let socket = Socket::from(accepted);
        assert!(
            socket.tcp_nodelay().expect("getsockopt"),
            "the engine relies on this: it sets nothing per connection"
        );
    }
}
