//! One upstream's connections on one shard: idle ones kept for reuse (last in, first
//! out, closed past `idle_timeout`), at most `max_connections` open, callers past that
//! waiting in line; and the upstream's addresses, resolved at creation and again on a
//! helper thread after a connect fails (the shard never waits on DNS after start).
//!
//! Shard-owned (`Rc`, `Cell`, `RefCell`); the only thing crossing threads is the
//! re-resolved address list, taken with a non-blocking `try_recv`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::rt::net::TcpStream;
use crossbeam_channel::{Receiver, Sender};

use super::{ClientError, UpstreamConfig};

/// Resolves `authority` (`host:port`), blocking: only at creation and on helper threads.
pub(super) fn resolve(authority: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve { host: authority.to_owned(), reason: e.to_string() })?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Resolve { host: authority.to_owned(), reason: "no addresses".into() });
    }
    Ok(addrs)
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

pub(super) struct Pool {
    authority: String,
    addrs: RefCell<Vec<SocketAddr>>,
    /// Round-robin over `addrs`; moves on after a failed connect.
    next_addr: Cell<usize>,
    idle: RefCell<Vec<Idle>>,
    /// Open connections: idle, lent out, or connecting.
    open: Cell<usize>,
    max_idle: usize,
    max_connections: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// Callers waiting for a connection to come free.
    waiters: RefCell<VecDeque<Waker>>,
    /// The outcome of a re-resolve (new addresses, or `None` when it failed), and
    /// whether one is under way (at most one at a time).
    resolved_tx: Sender<Option<Vec<SocketAddr>>>,
    resolved_rx: Receiver<Option<Vec<SocketAddr>>>,
    resolving: Cell<bool>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .field("open", &self.open.get())
            .field("idle", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

/// A connection lent out of the pool: given back with [`Pool::give_back`], or closed
/// (and its place freed) when dropped. `stream` is `None` once the socket is lost (a
/// cancelled read took it); the place is freed all the same.
pub(super) struct Lent {
    pub(super) stream: Option<TcpStream>,
    pool: Rc<Pool>,
    /// Set when the connection went back to the idle list.
    returned: bool,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if !self.returned {
            self.stream = None;
            self.pool.release_slot();
        }
    }
}

impl Pool {
    pub(super) fn new(authority: String, addrs: Vec<SocketAddr>, config: &UpstreamConfig) -> Pool {
        let (resolved_tx, resolved_rx) = crossbeam_channel::bounded(1);
        Pool {
            authority,
            addrs: RefCell::new(addrs),
            next_addr: Cell::new(0),
            idle: RefCell::new(Vec::with_capacity(config.max_idle)),
            open: Cell::new(0),
            max_idle: config.max_idle,
            max_connections: config.max_connections.max(1),
            idle_timeout: config.idle_timeout,
            connect_timeout: config.connect_timeout,
            waiters: RefCell::new(VecDeque::new()),
            resolved_tx,
            resolved_rx,
            resolving: Cell::new(false),
        }
    }

    pub(super) fn open(&self) -> usize {
        self.open.get()
    }

    pub(super) fn idle(&self) -> usize {
        self.idle.borrow().len()
    }

    /// A connection: an idle one (unless `fresh`), or a new one when under the cap;
    /// otherwise waits for one to come free. The caller bounds the wait.
    pub(super) async fn take(self: &Rc<Self>, fresh: bool) -> Result<(Lent, bool), ClientError> {
        loop {
            if !fresh {
                if let Some(stream) = self.pop_idle() {
                    return Ok((
                        Lent { stream: Some(stream), pool: Rc::clone(self), returned: false },
                        false,
                    ));
                }
            } else if self.open.get() >= self.max_connections {
                // A retry must not reuse a pooled connection: make room by closing one.
                if let Some(stale) = self.idle.borrow_mut().pop() {
                    drop(stale);
                    self.open.set(self.open.get() - 1);
                }
            }
            if self.open.get() < self.max_connections {
                self.open.set(self.open.get() + 1);
                return match self.connect().await {
                    Ok(stream) => {
                        Ok((Lent { stream: Some(stream), pool: Rc::clone(self), returned: false }, true))
                    }
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            self.wait_for_room().await;
        }
    }

    /// The most recently used idle connection still young enough.
    fn pop_idle(&self) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() < self.idle_timeout {
                return Some(conn.stream);
            }
            self.open.set(self.open.get() - 1);
        }
        None
    }

    async fn connect(&self) -> Result<TcpStream, ClientError> {
        if let Ok(outcome) = self.resolved_rx.try_recv() {
            self.resolving.set(false);
            if let Some(addrs) = outcome {
                *self.addrs.borrow_mut() = addrs;
            }
        }
        let addr = {
            let addrs = self.addrs.borrow();
            let i = self.next_addr.get() % addrs.len().max(1);
            match addrs.get(i) {
                Some(addr) => *addr,
                None => {
                    return Err(ClientError::Resolve {
                        host: self.authority.clone(),
                        reason: "no addresses".into(),
                    });
                }
            }
        };
        // `connect` sets TCP_NODELAY.
        let result = match crate::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(source)) => ClientError::Connect { addr, source },
            Err(_) => ClientError::ConnectTimeout { addr },
        };
        self.next_addr.set(self.next_addr.get().wrapping_add(1));
        self.re_resolve();
        Err(result)
    }

    /// Resolves the host again on a helper thread; the next connect picks the answer up.
    fn re_resolve(&self) {
        if self.resolving.replace(true) {
            return;
        }
        let authority = self.authority.clone();
        let tx = self.resolved_tx.clone();
        let spawned = std::thread::Builder::new().name("ringo-resolve".into()).spawn(move || {
            let _ = tx.try_send(resolve(&authority).ok());
        });
        if spawned.is_err() {
            self.resolving.set(false);
        }
    }

    /// Keeps `lent`'s connection for reuse (or closes it when enough are idle).
    pub(super) fn give_back(&self, mut lent: Lent) {
        let Some(stream) = lent.stream.take() else { return };
        lent.returned = true;
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(Idle { stream, since: Instant::now() });
            drop(idle);
            self.wake_one();
        } else {
            drop(idle);
            drop(stream);
            self.release_slot();
        }
    }

    fn release_slot(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.wake_one();
    }

    fn wake_one(&self) {
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }

    /// Resolves once a connection is idle or a slot is free (or on a spurious wake).
    async fn wait_for_room(&self) {
        let mut queued = false;
        std::future::poll_fn(|cx| {
            if queued || !self.idle.borrow().is_empty() || self.open.get() < self.max_connections {
                return Poll::Ready(());
            }
            queued = true;
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}
