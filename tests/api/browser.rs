//! A headless Chromium driven over the DevTools protocol (one page, a WebSocket to it), for the
//! console's end-to-end tests: navigate, evaluate, wait for a condition, screenshot. Script
//! errors and `console.error` calls are collected, so a test can say the page had none.
//!
//! Debian's `chromium` (or `NODEGRID_CHROMIUM`); without one the test is skipped unless
//! `NODEGRID_REQUIRE_CHROMIUM` is set (as `scripts/test.sh` does).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: std::process::Child,
    profile: PathBuf,
    socket: Socket,
    next_id: u64,
    /// Uncaught exceptions and `console.error` messages of the page, in order.
    pub errors: Vec<String>,
}

/// Where the screenshots of a test run go (kept as artifacts, never committed).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts")
        .join("console")
}

impl Browser {
    /// A browser with one blank page of `width`×`height`, or `None` when there is no Chromium
    /// and none is required.
    pub async fn launch(width: u32, height: u32) -> Option<Browser> {
        let program = std::env::var("NODEGRID_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile =
            std::env::temp_dir().join(format!("nodegrid-console-{}", uuid::Uuid::new_v4()));
        let spawned = std::process::Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--hide-scrollbars",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                assert!(
                    std::env::var_os("NODEGRID_REQUIRE_CHROMIUM").is_none(),
                    "chromium is required but cannot run ({program}): {error}"
                );
                eprintln!("chromium not found ({error}); the console was not checked in a browser");
                return None;
            }
        };
        // Chromium writes the port it chose into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let started = Instant::now();
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next().and_then(|line| line.parse().ok()))
            {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("the DevTools target list")
            .json()
            .await
            .expect("the DevTools target list is JSON");
        let page = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"))
            .and_then(|target| target["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(page)
            .await
            .expect("the page's DevTools socket");
        let mut browser = Browser {
            child,
            profile,
            socket,
            next_id: 0,
            errors: Vec::new(),
        };
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Page.enable", json!({})).await;
        browser.viewport(width, height, false).await;
        Some(browser)
    }

    /// One DevTools call; events that arrive meanwhile are looked at for errors.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .expect("a DevTools call is sent");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {CALL_TIMEOUT:?}"))
                .expect("the DevTools socket is open")
                .expect("a DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).expect("DevTools speaks JSON");
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.observe(&message);
        }
    }

    fn observe(&mut self, event: &Value) {
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &event["params"]["exceptionDetails"];
                self.errors.push(format!(
                    "uncaught: {} {}",
                    details["text"].as_str().unwrap_or_default(),
                    details["exception"]["description"]
                        .as_str()
                        .unwrap_or_default()
                ));
            }
            Some("Runtime.consoleAPICalled") if event["params"]["type"] == "error" => {
                self.errors
                    .push(format!("console.error: {}", event["params"]["args"]));
            }
            _ => {}
        }
    }

    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// The value of `expression` (awaited when it is a promise); a thrown error fails the test.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits (at most 20 s) until `expression` is truthy; its value.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self
                .eval(&format!(
                    "(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
                ))
                .await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(flag) => *flag,
                Value::Number(number) => number.as_f64() != Some(0.0),
                Value::String(text) => !text.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let body = self
                    .eval("document.querySelector('main') && document.querySelector('main').innerText")
                    .await;
                self.screenshot(&format!(
                    "failed-{}",
                    what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                ))
                .await;
                panic!("{what}: not within 20 s; the page shows: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets a form field's value as typing would (the field found by `selector`).
    pub async fn fill(&mut self, selector: &str, value: &str) {
        let script = format!(
            "(() => {{ const field = document.querySelector({selector}); field.focus(); field.value = {value}; \
             field.dispatchEvent(new Event('input', {{bubbles: true}})); field.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            selector = json!(selector),
            value = json!(value),
        );
        self.wait_for(
            &format!("the field {selector}"),
            &format!("document.querySelector({})", json!(selector)),
        )
        .await;
        self.eval(&script).await;
    }

    /// Clicks the element found by `selector`, once it exists.
    pub async fn click(&mut self, selector: &str) {
        self.wait_for(
            &format!("{selector} to click"),
            &format!("document.querySelector({})", json!(selector)),
        )
        .await;
        self.eval(&format!(
            "document.querySelector({}).click()",
            json!(selector)
        ))
        .await;
    }

    /// Presses and releases a key (`Tab`, `Enter`) on the focused element.
    pub async fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Tab" => (9, ""),
            "Enter" => (13, "\r"),
            other => panic!("no key code for {other}"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event =
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code});
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", event).await;
        }
    }

    /// A PNG of the page as it shows now.
    pub async fn png(&mut self) -> Vec<u8> {
        let result = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap_or_default())
            .expect("a base64 screenshot")
    }

    /// Saves a PNG of the page as `<name>.png` in [`screenshot_dir`]; its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let png = self.png().await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
