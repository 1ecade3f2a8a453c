//! A real `redis-server` for cluster tests: its own process on a free loopback port, no
//! persistence (`--save "" --appendonly no`), killed by its pid when dropped. [`Redis::kill`]
//! and [`Redis::restart`] model an outage; [`Redis::command`] speaks RESP for `INFO`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_addr, WAIT};

/// The server binary (Debian's `redis-server` package; `.ci/run` installs it).
const REDIS_SERVER: &str = "redis-server";

/// A running (or stopped) redis-server.
pub struct Redis {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Redis {
        let mut redis = Redis {
            addr: free_addr(),
            child: None,
        };
        redis.restart();
        redis
    }

    /// `redis://ADDR/0`
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.command(&["PING"]).is_some_and(|r| r.contains("PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer on {} within {WAIT:?}",
            self.addr
        );
    }

    /// Kills the server (SIGKILL, by its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command and returns the raw RESP reply, or `None` if the server is away.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 16384];
        // Read until the reply is complete: a line, or a bulk string of the announced length.
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if complete(&reply) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).to_string())
    }

    /// One counter of `INFO stats` (e.g. `"total_net_input_bytes"`), 0 when absent.
    pub fn stat(&self, name: &str) -> u64 {
        let info = self.command(&["INFO", "stats"]).unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `calls` of one command in `INFO commandstats` (e.g. `"xadd"`), 0 when never called.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    }
}

fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((first, rest)) = text.split_once("\r\n") else {
        return false;
    };
    match first
        .strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(len) => rest.len() >= len + 2,
        None => true,
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
