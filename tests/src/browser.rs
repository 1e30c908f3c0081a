//! Headless Chromium driven over the DevTools protocol, for the browser tests (the checklist
//! control on CRM forms): navigate, evaluate, wait, click and type with real (trusted) input
//! events, emulate a viewport or zoom, take screenshots. The same launch and protocol steps
//! as the connect page's test (`tests/tests/it/cleverreach_connect.rs`).
//!
//! No Chromium installed: [`program`] returns `None` and the tests skip themselves, unless
//! `REQUIRE_BROWSER=1` (CI), which makes that a failure.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Why a browser step failed (test code reports these as failures).
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("starting chromium: {0}")]
    Start(String),
    #[error("DevTools {method}: {detail}")]
    Protocol { method: String, detail: String },
    #[error("timed out waiting for {what}; the page shows: {page}")]
    Timeout { what: String, page: String },
    #[error("{0}")]
    Page(String),
}

type Result<T> = std::result::Result<T, BrowserError>;

/// The Chromium on this machine, if any. With `REQUIRE_BROWSER=1` a missing one panics, so
/// that CI never passes without running the browser tests.
pub fn program() -> Option<String> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|name| name.to_string());
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
            "REQUIRE_BROWSER=1 but no chromium is installed"
        );
        eprintln!("skipped: no chromium installed (apt-get install chromium)");
    }
    found
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One headless Chromium with one page.
pub struct Browser {
    child: std::process::Child,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A point on the page in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Browser {
    /// Starts Chromium (`program`) with a fresh profile and attaches to its page.
    pub async fn launch(program: &str) -> Result<Browser> {
        let profile =
            std::env::temp_dir().join(format!("crc-chromium-{}", uuid::Uuid::new_v4().simple()));
        let mut child = std::process::Command::new(program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--font-render-hinting=none",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Start(e.to_string()))?;
        let profile = TempDir(profile);
        // Chromium prints its DevTools address on stderr; keep draining it so that it never
        // blocks on a full pipe.
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BrowserError::Start("no stderr".into()))?;
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = address
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| BrowserError::Start("chromium printed no DevTools address".into()))?;
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let start = |e: reqwest::Error| BrowserError::Start(e.to_string());
        let targets: Vec<Value> = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(start)?
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
            .map_err(start)?
            .json()
            .await
            .map_err(start)?;
        let page_ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| BrowserError::Start("no page target".into()))?
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(page_ws)
            .await
            .map_err(|e| BrowserError::Start(e.to_string()))?;
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.viewport(1000, 900, 1.0).await?;
        Ok(browser)
    }

    /// One DevTools command; its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let protocol = |detail: String| BrowserError::Protocol {
            method: method.to_string(),
            detail,
        };
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .map_err(|_| protocol("no answer within 30 s".into()))?
                .ok_or_else(|| protocol("the connection closed".into()))?
                .map_err(|e| protocol(e.to_string()))?;
            if let Message::Text(text) = message {
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| protocol(e.to_string()))?;
                if value["id"] == id {
                    if let Some(error) = value.get("error") {
                        return Err(protocol(error.to_string()));
                    }
                    return Ok(value["result"].clone());
                }
            }
        }
    }

    pub async fn go(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        Ok(())
    }

    /// Evaluates an expression (awaiting a promise) and returns its value; a thrown error is
    /// an error naming the exception.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(BrowserError::Page(format!(
                "{expression}: {}",
                exception["exception"]["description"]
                    .as_str()
                    .unwrap_or(&exception.to_string())
            )));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is true (up to `seconds`).
    pub async fn wait_for_within(&mut self, expression: &str, seconds: u64) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let probe = format!(
                "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
            );
            if self.eval(&probe).await? == true {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let page = self
                    .eval("document.body ? document.body.innerText : location.href")
                    .await
                    .unwrap_or_default();
                return Err(BrowserError::Timeout {
                    what: expression.to_string(),
                    page: page.as_str().unwrap_or_default().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `expression` is true (up to 15 s).
    pub async fn wait_for(&mut self, expression: &str) -> Result<()> {
        self.wait_for_within(expression, 15).await
    }

    /// The centre of the element that `element_expression` (a JS expression yielding an
    /// element of the page or of a same-origin frame) occupies, in page coordinates.
    pub async fn center(&mut self, element_expression: &str) -> Result<Point> {
        let value = self
            .eval(&format!(
                "(() => {{
                    const el = {element_expression};
                    if (!el) throw new Error('no such element');
                    el.scrollIntoView({{ block: 'center' }});
                    const r = el.getBoundingClientRect();
                    let x = r.left + r.width / 2, y = r.top + r.height / 2;
                    let w = el.ownerDocument.defaultView;
                    while (w.frameElement) {{
                        const f = w.frameElement.getBoundingClientRect();
                        x += f.left; y += f.top;
                        w = w.parent;
                    }}
                    return [x, y];
                }})()"
            ))
            .await?;
        match (value[0].as_f64(), value[1].as_f64()) {
            (Some(x), Some(y)) => Ok(Point { x, y }),
            _ => Err(BrowserError::Page(format!(
                "{element_expression} has no position"
            ))),
        }
    }

    /// A real mouse click (pressed and released) at the element's centre.
    pub async fn click(&mut self, element_expression: &str) -> Result<()> {
        let p = self.center(element_expression).await?;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": p.x, "y": p.y, "button": "left", "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// A real key press (down and up) of a named key: `Tab`, `ArrowRight`, `ArrowLeft`,
    /// `ArrowDown`, `ArrowUp`, `Space`, `Enter`; `shift` holds Shift.
    pub async fn press(&mut self, key: &str, shift: bool) -> Result<()> {
        let (key_name, code, vk, text) = match key {
            "Tab" => ("Tab", "Tab", 9, None),
            "Enter" => ("Enter", "Enter", 13, Some("\r")),
            "Space" => (" ", "Space", 32, Some(" ")),
            "ArrowLeft" => ("ArrowLeft", "ArrowLeft", 37, None),
            "ArrowUp" => ("ArrowUp", "ArrowUp", 38, None),
            "ArrowRight" => ("ArrowRight", "ArrowRight", 39, None),
            "ArrowDown" => ("ArrowDown", "ArrowDown", 40, None),
            other => return Err(BrowserError::Page(format!("unknown key {other}"))),
        };
        let modifiers = if shift { 8 } else { 0 };
        let mut down = json!({
            "type": if text.is_some() { "keyDown" } else { "rawKeyDown" },
            "key": key_name, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
            "modifiers": modifiers,
        });
        if let Some(t) = text {
            down["text"] = json!(t);
            down["unmodifiedText"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down).await?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key_name, "code": code,
                    "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk, "modifiers": modifiers }),
        )
        .await?;
        Ok(())
    }

    /// The viewport in CSS pixels and the device scale (browser zoom 200% on a window 2w
    /// wide is `viewport(w, h, 2.0)`).
    pub async fn viewport(&mut self, width: u32, height: u32, scale: f64) -> Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": false }),
        )
        .await?;
        Ok(())
    }

    /// A PNG of the element `element_expression` (page coordinates, as [`Browser::center`]),
    /// or of the viewport when `None`, written to `path` (directories created).
    pub async fn screenshot(
        &mut self,
        element_expression: Option<&str>,
        path: &Path,
    ) -> Result<()> {
        let mut params = json!({ "format": "png", "captureBeyondViewport": true });
        if let Some(expression) = element_expression {
            let rect = self
                .eval(&format!(
                    "(() => {{ const r = ({expression}).getBoundingClientRect(); return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})()"
                ))
                .await?;
            let n = |i: usize| rect[i].as_f64().unwrap_or(0.0);
            params["clip"] =
                json!({ "x": n(0), "y": n(1), "width": n(2), "height": n(3), "scale": 1 });
        }
        let shot = self.call("Page.captureScreenshot", params).await?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| BrowserError::Page("no screenshot data".into()))?;
        let bytes = decode_base64(data)
            .ok_or_else(|| BrowserError::Page("the screenshot is not base64".into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| BrowserError::Page(e.to_string()))?;
        }
        std::fs::write(path, bytes).map_err(|e| BrowserError::Page(e.to_string()))?;
        Ok(())
    }
}

/// Decodes standard base64 (what DevTools sends screenshots in).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for quad in bytes.chunks(4) {
        let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
        let mut n = 0u32;
        for (i, b) in quad.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { value(*b)? };
            n = (n << 6) | v;
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

/// Where the tests write screenshots: `target/checklist-screenshots/` of the workspace (or
/// of `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("checklist-screenshots")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert!(decode_base64("Zg=").is_none());
    }
}
