//! Debian's headless Chromium driven over the Chrome DevTools Protocol: launching it with a
//! fresh profile, attaching to a page, evaluating script, reading `window` state, and
//! screenshots. Chromium and its profile are removed (by pid) when the guards drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A child process killed (by its pid) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium with a fresh profile; its DevTools websocket URL read from stderr.
pub struct Browser {
    _child: Killed,
    ws_url: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `_child` is dropped after this body: kill first, then remove the profile.
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// `None` (after printing why) when Chromium is not installed.
    pub fn launch(name: &str) -> Option<Browser> {
        Browser::launch_with(name, &[])
    }

    /// As [`Browser::launch`], with `extra` command-line flags.
    pub fn launch_with(name: &str, extra: &[String]) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() {
            eprintln!(
                "SKIPPED: {CHROMIUM} not found; install Debian's `chromium` package to run the \
                 browser tests (.ci/run does)"
            );
            return None;
        }
        let profile = std::env::temp_dir().join(format!(
            "sse-edge-chromium-{}-{name}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        let stderr = child.stderr.take().expect("chromium stderr");
        let child = Killed(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stderr after the URL so Chromium never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed `DevTools listening on ws://...` within 30s");
        Some(Browser {
            _child: child,
            ws_url,
            profile,
        })
    }
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A Chrome DevTools Protocol connection attached (flat mode) to one page target.
pub struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    /// Connects to the browser and attaches to a new blank page.
    pub async fn open_page(browser: &Browser) -> Cdp {
        let (ws, _) = timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(browser.ws_url.as_str()),
        )
        .await
        .expect("CDP connect within 10s")
        .expect("CDP websocket");
        let mut cdp = Cdp {
            ws,
            next_id: 0,
            session: None,
        };
        let target = cdp
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = cdp
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        cdp.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        cdp.call("Page.enable", json!({})).await;
        cdp
    }

    /// Sends one command and waits (10s at most) for its result, skipping events.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        timeout(
            Duration::from_secs(10),
            self.ws.send(Message::text(message.to_string())),
        )
        .await
        .expect("CDP send within 10s")
        .expect("CDP send");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no CDP answer to {method} within 10s"))
                .expect("CDP connection open")
                .expect("CDP frame");
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("CDP JSON");
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value (by value).
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// `window[global]` as JSON (properties named `source`, the EventSource objects, left out).
    pub async fn state(&mut self, global: &str) -> Value {
        let value = self
            .evaluate(&format!(
                "window.{global} ? JSON.stringify(window.{global}, \
                 (k, v) => k === 'source' ? undefined : v) : 'null'"
            ))
            .await;
        let text = value.as_str().unwrap_or("null");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{global} JSON: {e}"))
    }

    /// Polls `window[global]` until `check` holds or `limit` passes; returns the last state.
    pub async fn wait_state(
        &mut self,
        global: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.state(global).await;
            if check(&state) || Instant::now() >= deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a PNG of the page under `target/browser-artifacts/`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("browser-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}
