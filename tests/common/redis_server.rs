//! A real `redis-server` per test, on a free loopback port, killed on drop; it can be
//! paused (SIGSTOP), killed and restarted on the same port. Tests that use it fail
//! loudly when redis-server is missing: scripts/test installs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringo::redis::RedisConfig;

use super::free_port;

/// A `redis-server` of this test's own.
pub struct RedisServer {
    child: Child,
    port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let port = free_port();
        let mut s = RedisServer { child: RedisServer::spawn(port, &extra), port, extra };
        s.wait_ready();
        s
    }

    fn spawn(port: u16, extra: &[String]) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}): install it (scripts/test does: apt-get install redis-server)")
            })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig { addr: self.addr(), ..RedisConfig::default() }
    }

    /// Waits until the server answers PING (or asks for a password).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut b = [0u8; 64];
                if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut b) {
                        if b[..n].starts_with(b"+PONG") || b[..n].starts_with(b"-NOAUTH") {
                            return;
                        }
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server on port {} never answered PING", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(ok.success(), "kill {sig} redis-server");
    }

    /// SIGSTOP: the server holds connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh server on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.child = RedisServer::spawn(self.port, &self.extra);
            std::thread::sleep(Duration::from_millis(50));
            match self.child.try_wait() {
                // The port may linger a moment after the kill: try again.
                Ok(Some(_)) if Instant::now() < deadline => continue,
                _ => break,
            }
        }
        self.wait_ready();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        self.kill();
    }
}
