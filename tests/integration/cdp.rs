//! A minimal Chrome DevTools Protocol (CDP) driver for integration tests.
//!
//! [`Browser::launch`] starts a headless Chromium with a throw-away profile and
//! connects to its browser-level DevTools WebSocket. [`Browser::new_page`]
//! opens a tab and attaches to it with a flattened session, so page commands
//! travel over the same socket tagged with a `sessionId`.
//!
//! The WebSocket client is a small RFC 6455 client over [`TcpStream`] (masked
//! frames, 7/16/64-bit lengths, fragmented messages, ping/pong, close). Every
//! wait is bounded by [`TIMEOUT`] and fails with an `Err(String)` rather than
//! hanging. Dropping a [`Browser`] closes Chromium, waits for its helper
//! processes to disappear and deletes the profile directory.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

/// Upper bound for every wait: launch, each command, each page load.
pub const TIMEOUT: Duration = Duration::from_secs(30);

const CHROMIUM: &str = "/usr/bin/chromium";
const FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --remote-debugging-port=0";

/// A running headless Chromium and its browser-level DevTools connection.
pub struct Browser {
    ws: WebSocket,
    next_id: u64,
    /// Messages read while waiting for something else, not yet consumed.
    events: VecDeque<Value>,
    process: Process,
}

impl Browser {
    /// Starts `/usr/bin/chromium` headless and connects to its DevTools socket.
    pub fn launch() -> Result<Browser, String> {
        let install = "install it with `apt-get install chromium`";
        if !Path::new(CHROMIUM).exists() {
            return Err(format!("{CHROMIUM} not found; {install}"));
        }
        let name = format!("cdp-profile-{}-{:x}", std::process::id(), random_u64());
        let profile = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&profile).map_err(io_context("creating profile dir"))?;
        let mut command = Command::new(CHROMIUM);
        command.args(FLAGS.split_whitespace());
        command.arg(format!("--user-data-dir={}", profile.display()));
        command
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = command.stderr(Stdio::piped()).spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&profile);
            format!("cannot run {CHROMIUM} ({e}); {install}")
        })?;
        let mut process = Process { child, profile };
        let ws = process.connect()?;
        let events = VecDeque::new();
        Ok(Browser {
            ws,
            next_id: 0,
            events,
            process,
        })
    }

    /// Opens a new `about:blank` tab, attaches to it and enables the Page,
    /// Runtime, Network and Log domains.
    pub fn new_page(&mut self) -> Result<Page<'_>, String> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = str_field(&target, "targetId")?;
        let attach = json!({"targetId": target_id, "flatten": true});
        let attached = self.call(None, "Target.attachToTarget", attach)?;
        let session = str_field(&attached, "sessionId")?;
        let (requests, errors) = (Vec::new(), Vec::new());
        let mut page = Page {
            browser: self,
            session,
            target_id,
            requests,
            errors,
        };
        for domain in ["Page", "Runtime", "Network", "Log"] {
            page.call(&format!("{domain}.enable"), json!({}))?;
        }
        Ok(page)
    }

    /// Sends a command (to a page session if given) and waits for its result.
    /// Events arriving in the meantime are queued in `self.events`.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> CdpResult {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            msg["sessionId"] = json!(session);
        }
        self.ws.send_frame(0x1, msg.to_string().as_bytes())?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.read_message(deadline).map_err(context(method))?;
            if msg["id"].as_u64() != Some(id) {
                self.events.push_back(msg);
            } else if let Some(err) = msg.get("error") {
                return Err(format!("{method} failed: {err}"));
            } else {
                return Ok(msg["result"].clone());
            }
        }
    }

    fn read_message(&mut self, deadline: Instant) -> CdpResult {
        let text = self.ws.recv_text(deadline)?;
        serde_json::from_str(&text).map_err(context("parsing CDP message"))
    }
}

type CdpResult = Result<Value, String>;

impl Drop for Browser {
    /// Asks Chromium to shut down cleanly (so its helpers exit as well);
    /// `Process` then kills whatever is left and removes the profile.
    fn drop(&mut self) {
        let helpers = self.process.helper_pids();
        let _ = self
            .ws
            .send_frame(0x1, br#"{"id":0,"method":"Browser.close"}"#);
        self.process.wait_until_gone(helpers);
    }
}

/// The Chromium child process and its profile directory, cleaned up on drop.
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Process {
    /// Reads Chromium's stderr until `DevTools listening on ws://...` and
    /// connects there. Stderr keeps being drained on a thread afterwards.
    fn connect(&mut self) -> Result<WebSocket, String> {
        let stderr = self.child.stderr.take().ok_or("stderr not captured")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut log = String::new();
        loop {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no DevTools URL in {TIMEOUT:?}:\n{log}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().map_err(|e| e.to_string());
                    return Err(format!("chromium exited early ({status:?}):\n{log}"));
                }
            };
            match line.split_once("DevTools listening on ") {
                Some((_, url)) => return WebSocket::connect(url.trim(), deadline),
                None => log = log + &line + "\n",
            }
        }
    }

    /// PIDs of helper processes using our profile (Linux `/proc`; else none).
    /// Chromium rewrites their titles, so `cmdline` is searched as one string.
    fn helper_pids(&self) -> Vec<String> {
        let profile = self.profile.to_string_lossy().into_owned();
        let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        let pids = entries.filter_map(|e| e.file_name().into_string().ok());
        let ours = |pid: &String| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&profile)
        };
        pids.filter(ours).collect()
    }

    /// Waits (at most 5 s) for Chromium to exit and for the helper `pids` to
    /// vanish, so that no orphaned process (not even a zombie) is left behind.
    fn wait_until_gone(&mut self, pids: Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = |pid: &String| Path::new(&format!("/proc/{pid}")).exists();
        while Instant::now() < deadline
            && (matches!(self.child.try_wait(), Ok(None)) || pids.iter().any(alive))
        {
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    /// Kills Chromium if still running and removes the profile directory.
    fn drop(&mut self) {
        let helpers = self.helper_pids();
        let _ = self.child.kill();
        self.wait_until_gone(helpers);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir_all(&self.profile).is_err() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
    }
}

/// One attached tab. Commands go through the borrowed [`Browser`]'s socket.
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
    target_id: String,
    requests: Vec<String>,
    errors: Vec<String>,
}

impl Page<'_> {
    /// Navigates and waits for the load event. A same-document navigation
    /// (only the `#fragment` changes) has no load event and returns at once.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        self.take_events("");
        let nav = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(err) = nav["errorText"].as_str() {
            return Err(format!("navigating to {url} failed: {err}"));
        }
        let deadline = Instant::now() + TIMEOUT;
        while nav.get("loaderId").is_some() && !self.take_events("Page.loadEventFired") {
            let msg = self.browser.read_message(deadline).map_err(context(url))?;
            self.browser.events.push_back(msg);
        }
        Ok(())
    }

    /// `Runtime.evaluate` with `returnByValue` and `awaitPromise`; returns the
    /// value (`Null` for `undefined`). A thrown exception (or rejected promise)
    /// is an `Err` with its description.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let res = self.call("Runtime.evaluate", params)?;
        match res.get("exceptionDetails") {
            Some(details) => Err(exception_text(details)),
            None => Ok(res["result"].get("value").cloned().unwrap_or_default()),
        }
    }

    /// A real left mouse click (press + release, `clickCount` 1) at viewport
    /// coordinates in CSS pixels.
    pub fn click_at(&mut self, x: f64, y: f64) -> Result<(), String> {
        for kind in ["mousePressed", "mouseReleased"] {
            let ev = json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1});
            self.call("Input.dispatchMouseEvent", ev)?;
        }
        Ok(())
    }

    /// Scrolls the first element matching a CSS `selector` into view and
    /// clicks the centre of its bounding box.
    pub fn click(&mut self, selector: &str) -> Result<(), String> {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; \
             e.scrollIntoView({{block: 'center', inline: 'center'}}); \
             const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2, r.width * r.height]; }})()",
            Value::from(selector)
        );
        let v = self.eval(&js)?;
        match (v[0].as_f64(), v[1].as_f64(), v[2].as_f64()) {
            (Some(x), Some(y), Some(area)) if area > 0.0 => self.click_at(x, y),
            (Some(_), ..) => Err(format!("element {selector:?} has an empty box")),
            _ => Err(format!("no element matches selector {selector:?}")),
        }
    }

    /// Types `text` into the focused element (`Input.insertText`).
    pub fn type_text(&mut self, text: &str) -> Result<(), String> {
        self.call("Input.insertText", json!({"text": text}))?;
        Ok(())
    }

    /// PNG bytes of the viewport. A non-zero `width` and `height` first sets
    /// the viewport size (scale factor 1); `0, 0` keeps the current one.
    #[allow(dead_code)] // Used by benches/pictures.rs, which includes this file.
    pub fn screenshot(&mut self, width: u32, height: u32) -> Result<Vec<u8>, String> {
        if width > 0 && height > 0 {
            let size = json!({"width": width, "height": height, "deviceScaleFactor": 1,
                              "mobile": false});
            self.call("Emulation.setDeviceMetricsOverride", size)?;
        }
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        base64_decode(shot["data"].as_str().ok_or("screenshot without data")?)
    }

    /// Every URL the page requested since it was created, in order (as far as
    /// events have been received: every command call catches up).
    pub fn requests(&self) -> &[String] {
        &self.requests
    }

    /// Console errors/assertions, uncaught exceptions and error log entries
    /// since the page was created, as readable strings.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    fn call(&mut self, method: &str, params: Value) -> CdpResult {
        let result = self.browser.call(Some(&self.session), method, params);
        self.take_events("");
        result
    }

    /// Records all queued events of this session; true if one was `wanted`.
    fn take_events(&mut self, wanted: &str) -> bool {
        let mut seen = false;
        while let Some(event) = self.browser.events.pop_front() {
            if event["sessionId"].as_str() == Some(&self.session) {
                seen |= event["method"] == wanted;
                self.record(event["method"].as_str().unwrap_or(""), &event["params"]);
            }
        }
        seen
    }

    fn record(&mut self, method: &str, p: &Value) {
        let (kind, entry) = (p["type"].as_str().unwrap_or(""), &p["entry"]);
        let error = match method {
            "Network.requestWillBeSent" => {
                let url = p["request"]["url"].as_str().unwrap_or_default();
                return self.requests.push(url.to_string());
            }
            "Runtime.consoleAPICalled" if kind == "error" || kind == "assert" => {
                let args = p["args"].as_array().into_iter().flatten();
                let text: Vec<String> = args.map(describe).collect();
                format!("console.{kind}: {}", text.join(" "))
            }
            "Runtime.exceptionThrown" => exception_text(&p["exceptionDetails"]),
            "Log.entryAdded" if entry["level"] == "error" => {
                let url = entry["url"].as_str().map(|url| format!(" ({url})"));
                let text = entry["text"].as_str().unwrap_or_default();
                format!("log: {text}{}", url.unwrap_or_default())
            }
            _ => return,
        };
        self.errors.push(error);
    }
}

impl Drop for Page<'_> {
    /// Closes the tab (best effort) and discards its pending events.
    fn drop(&mut self) {
        let params = json!({"targetId": self.target_id});
        let _ = self.browser.call(None, "Target.closeTarget", params);
        self.browser.events.clear();
    }
}

fn str_field(v: &Value, key: &str) -> Result<String, String> {
    let field = v[key].as_str().map(str::to_string);
    field.ok_or_else(|| format!("missing {key} in {v}"))
}

/// Prefixes an error with what was being done.
fn context<E: Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Like [`context`] for I/O errors, naming socket read timeouts as such.
fn io_context(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("{what}: timed out"),
        _ => format!("{what}: {e}"),
    }
}

/// A readable form of a `Runtime.RemoteObject` console argument.
fn describe(obj: &Value) -> String {
    match (&obj["value"], obj["description"].as_str()) {
        (Value::String(s), _) => s.clone(),
        (_, Some(description)) => description.to_string(),
        (Value::Null, None) => obj["type"].as_str().unwrap_or("?").to_string(),
        (value, None) => value.to_string(),
    }
}

/// A `Runtime.ExceptionDetails` as DevTools shows it, e.g. `Uncaught Error: x`.
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("Uncaught");
    format!("{text} {}", describe(&details["exception"]))
}

/// Minimal RFC 6455 WebSocket client for text messages.
struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    /// Connects to `ws://host:port/path` and performs the Upgrade handshake.
    fn connect(url: &str, deadline: Instant) -> Result<WebSocket, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or(format!("bad DevTools URL {url}"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = TcpStream::connect(host).map_err(io_context(host))?;
        let _ = stream.set_write_timeout(Some(TIMEOUT));
        let writer = stream.try_clone().map_err(io_context("cloning socket"))?;
        let mut ws = WebSocket {
            reader: BufReader::new(stream),
            writer,
        };
        // 16 random bytes in base64: 21 random digits, then 2 zero-padded bits.
        let key: String = (0..21)
            .map(|_| B64[random_u64() as usize % 64] as char)
            .collect();
        // No Origin header: Chromium rejects origins not in --remote-allow-origins.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}A==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.writer
            .write_all(request.as_bytes())
            .map_err(io_context("handshake"))?;
        let mut status = String::new();
        loop {
            let mut line = String::new();
            ws.set_timeout(deadline)?;
            ws.reader
                .read_line(&mut line)
                .map_err(io_context("handshake"))?;
            match line.trim() {
                _ if line.is_empty() => return Err("connection closed in handshake".into()),
                "" if status.split(' ').nth(1) == Some("101") => return Ok(ws),
                "" => return Err(format!("WebSocket upgrade refused: {status}")),
                first if status.is_empty() => status = first.to_string(),
                _ => {}
            }
        }
    }

    fn set_timeout(&self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {TIMEOUT:?}"));
        }
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(left))
            .map_err(io_context("set timeout"))
    }

    fn read_bytes(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        self.set_timeout(deadline)?;
        let mut buf = vec![0; n];
        let read = self.reader.read_exact(&mut buf);
        read.map_err(io_context("reading from browser"))?;
        Ok(buf)
    }

    fn read_uint(&mut self, n: usize, deadline: Instant) -> Result<u64, String> {
        let bytes = self.read_bytes(n, deadline)?;
        Ok(bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Sends one masked frame with FIN set.
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => frame.extend([0xFE].into_iter().chain((n as u16).to_be_bytes())),
            n => frame.extend([0xFF].into_iter().chain((n as u64).to_be_bytes())),
        }
        let mask = random_u64().to_le_bytes();
        frame.extend_from_slice(&mask[..4]);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer
            .write_all(&frame)
            .map_err(io_context("writing to browser"))
    }

    /// Receives the next complete text message, reassembling continuation
    /// frames and answering pings on the way.
    fn recv_text(&mut self, deadline: Instant) -> Result<String, String> {
        let mut message = Vec::new();
        loop {
            let head = self.read_bytes(2, deadline)?;
            let (fin, opcode, masked) = (head[0] & 0x80 != 0, head[0] & 0x0F, head[1] & 0x80 != 0);
            let len = match head[1] & 0x7F {
                126 => self.read_uint(2, deadline)?,
                127 => self.read_uint(8, deadline)?,
                n => u64::from(n),
            };
            let mask = self.read_bytes(if masked { 4 } else { 0 }, deadline)?;
            let len = usize::try_from(len).map_err(context("frame length"))?;
            let mut payload = self.read_bytes(len, deadline)?;
            if masked {
                for (i, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[i % 4];
                }
            }
            match opcode {
                0x0..=0x2 => message.extend_from_slice(&payload),
                0x8 => {
                    let _ = self.send_frame(0x8, &payload);
                    return Err("browser closed the DevTools connection".into());
                }
                0x9 => self.send_frame(0xA, &payload)?,
                0xA => {}
                op => return Err(format!("unexpected WebSocket opcode {op:#x}")),
            }
            if fin && opcode <= 0x2 {
                return String::from_utf8(message).map_err(context("CDP message"));
            }
        }
    }
}

/// Non-cryptographic randomness (WebSocket key and masks, temp dir names).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[allow(dead_code)] // Used by `screenshot`.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut table = [u8::MAX; 256];
    for (i, &c) in B64.iter().enumerate() {
        table[usize::from(c)] = i as u8;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = table[usize::from(c)];
        if v == u8::MAX {
            return Err(format!("invalid base64 byte {c:#x} in screenshot"));
        }
        acc = ((acc << 6) | u32::from(v)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
