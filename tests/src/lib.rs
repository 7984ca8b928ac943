//! The harness for black-box tests: build the binary and plugins through cargo, start
//! `colloquy run` on a free port with real endpoint files, talk HTTP to it.

pub mod bots;
pub mod capture;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod services;

/// The shared Rasa reference data, read in place.
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Runs `cargo build -p <pkg>` and returns the artifact of `kind` ("bin" or "cdylib").
/// Cargo releases its lock before running test binaries, so this works inside `cargo test`.
pub fn cargo_artifact(pkg: &str, kind: &str) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root()).args([
        "build",
        "-p",
        pkg,
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    // Variables cargo sets for this test binary would make the nested build look different.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_CFG_")
            || k == "CARGO_MANIFEST_DIR"
            || k == "CARGO_CRATE_NAME"
            || k == "OUT_DIR"
        {
            cmd.env_remove(k);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("cargo runs");
    assert!(out.status.success(), "cargo build -p {pkg} failed");
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || msg["target"]["kind"]
                .as_array()
                .is_none_or(|k| !k.iter().any(|x| x == kind))
        {
            continue;
        }
        if kind == "bin" {
            found = msg["executable"].as_str().map(PathBuf::from);
        } else {
            found = msg["filenames"].as_array().and_then(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .find(|f| f.ends_with(".so"))
                    .map(PathBuf::from)
            });
        }
    }
    found.unwrap_or_else(|| panic!("no {kind} artifact for {pkg}"))
}

/// The `colloquy` executable (built once per test process).
pub fn colloquy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_artifact("colloquy", "bin"))
        .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `colloquy run`, killed on drop.
pub struct Server {
    pub port: u16,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub client: reqwest::blocking::Client,
    pub token: Option<String>,
    pub stderr_path: PathBuf,
}

pub struct ServerBuilder {
    args: Vec<String>,
    endpoints: Option<String>,
    env: Vec<(String, String)>,
    token: Option<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl ServerBuilder {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    /// Drops the default `--enable-api` (to pass another spelling, or none).
    pub fn without_api_flag(mut self) -> Self {
        self.args.retain(|a| a != "--enable-api");
        self
    }
    pub fn endpoints(mut self, yaml: &str) -> Self {
        self.endpoints = Some(yaml.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn token(mut self, t: &str) -> Self {
        self.token = Some(t.into());
        self.args.push("--auth-token".into());
        self.args.push(t.into());
        self
    }
    pub fn file(mut self, name: &str, content: &[u8]) -> Self {
        self.files.push((name.into(), content.into()));
        self
    }

    /// Starts the server and waits until it listens; panics with its stderr if it exits.
    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server; `Err(stderr)` when it exits before listening.
    pub fn try_start(self) -> Result<Server, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in &self.files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let port = free_port();
        let mut cmd = Command::new(colloquy_bin());
        cmd.current_dir(dir.path())
            .arg("run")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(&self.args);
        if let Some(yaml) = &self.endpoints {
            let path = dir.path().join("endpoints.yml");
            std::fs::write(&path, yaml).unwrap();
            cmd.arg("--endpoints").arg(&path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        if !self.env.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("colloquy starts");
        let stdout = child.stdout.take().unwrap();
        let mut stdout_copy = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(stdout_copy, "{line}");
                if line.starts_with("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(format!(
                    "colloquy exited with {status} before listening:\n{err}"
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("colloquy did not start listening within 60 s".into());
            }
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Ok(Server {
            port,
            child,
            dir,
            client,
            token: self.token,
            stderr_path,
        })
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: vec!["--enable-api".into()],
            endpoints: None,
            env: vec![],
            token: None,
            files: vec![],
        }
    }

    /// The URL of `path`, with the auth token appended when the server has one.
    pub fn url(&self, path: &str) -> String {
        let base = format!("http://127.0.0.1:{}{}", self.port, path);
        match &self.token {
            Some(t) if !path.contains("token=") => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{base}{sep}token={t}")
            }
            _ => base,
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().unwrap();
        decode(r)
    }
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        decode(self.client.post(self.url(path)).json(body).send().unwrap())
    }
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        decode(
            self.client
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    }
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        decode(self.client.put(self.url(path)).json(body).send().unwrap())
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
    /// What the server wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }
    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "colloquy did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Runs `colloquy <args>` to completion: (exit code, stdout, stderr).
pub fn colloquy(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(colloquy_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Asserts Rasa's error body with `status`.
pub fn assert_rasa_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "body: {body}");
    for key in [
        "version", "status", "message", "reason", "details", "help", "code",
    ] {
        assert!(body.get(key).is_some(), "error body lacks `{key}`: {body}");
    }
    assert_eq!(body["status"], "failure");
    assert_eq!(body["code"], expected);
}

/// The first event of type `kind` in a tracker's `events` (panics when there is none).
pub fn first_event(tracker: &Value, kind: &str) -> Value {
    tracker["events"]
        .as_array()
        .expect("a tracker with events")
        .iter()
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {tracker}"))
        .clone()
}
