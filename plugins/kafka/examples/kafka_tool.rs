//! A tiny Kafka client for black-box tests (tests/tests/kafka_host.rs), so that the tests
//! crate need not build librdkafka itself.
//!
//! ```text
//! kafka_tool create-topic --bootstrap HOST:PORT --topic T [--partitions N] [--timeout-ms T]
//! kafka_tool consume --bootstrap HOST:PORT --topic T [--partitions N] [--from-beginning]
//!            [--count N] [--timeout-ms T] [--linger-ms T]
//! ```
//!
//! `create-topic` retries until the broker answers (an existing topic is fine) and exits 0, or
//! exits 1 after the timeout. `consume` assigns every partition (no consumer group is joined
//! or committed), prints one JSON line per record — `{"partition", "offset", "key",
//! "headers": [[name, value], …], "payload"}` — until `count` records were printed or the
//! timeout passed, then keeps reading for `--linger-ms` (default 500) to catch duplicates.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

fn usage() -> ! {
    eprintln!(
        "usage: kafka_tool create-topic --bootstrap B --topic T [--partitions N] [--timeout-ms T]\n       \
         kafka_tool consume --bootstrap B --topic T [--partitions N] [--from-beginning] \
         [--count N] [--timeout-ms T] [--linger-ms T]"
    );
    std::process::exit(2)
}

struct Args {
    command: String,
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse() -> Args {
        let mut it = std::env::args().skip(1);
        let command = it.next().unwrap_or_else(|| usage());
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                usage()
            };
            if name == "from-beginning" {
                flags.push(name.to_string());
            } else {
                let v = it.next().unwrap_or_else(|| usage());
                values.insert(name.to_string(), v);
            }
        }
        Args {
            command,
            values,
            flags,
        }
    }
    fn str(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| {
            eprintln!("--{name} is required");
            usage()
        })
    }
    fn num(&self, name: &str, default: u64) -> u64 {
        match self.values.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name} must be a number, not {v}");
                usage()
            }),
        }
    }
}

fn main() {
    let args = Args::parse();
    let bootstrap = args.str("bootstrap");
    let topic = args.str("topic");
    let partitions = args.num("partitions", 1) as i32;
    match args.command.as_str() {
        "create-topic" => {
            let timeout = Duration::from_millis(args.num("timeout-ms", 30_000));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let ok = rt.block_on(create_topic(&bootstrap, &topic, partitions, timeout));
            std::process::exit(if ok { 0 } else { 1 });
        }
        "consume" => {
            let start = if args.flags.iter().any(|f| f == "from-beginning") {
                Offset::Beginning
            } else {
                Offset::End
            };
            consume(
                &bootstrap,
                &topic,
                partitions,
                start,
                args.num("count", u64::MAX) as usize,
                Duration::from_millis(args.num("timeout-ms", 30_000)),
                Duration::from_millis(args.num("linger-ms", 500)),
            );
        }
        _ => usage(),
    }
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> bool {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let deadline = Instant::now() + timeout;
    loop {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        match tokio::time::timeout(Duration::from_secs(10), admin.create_topics([&new], &opts))
            .await
        {
            Ok(Ok(results)) => match &results[0] {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return true,
                Err((_, code)) => eprintln!("create topic {topic}: {code:?}; retrying"),
            },
            Ok(Err(e)) => eprintln!("create topic {topic}: {e}; retrying"),
            Err(_) => eprintln!("create topic {topic}: no answer; retrying"),
        }
        if Instant::now() >= deadline {
            eprintln!("could not create topic {topic} on {bootstrap}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn record(m: &BorrowedMessage<'_>) -> Value {
    let headers: Vec<Value> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| json!([h.key, String::from_utf8_lossy(h.value.unwrap_or_default())]))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "payload": String::from_utf8_lossy(m.payload().unwrap_or_default()),
    })
}

fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    start: Offset,
    count: usize,
    timeout: Duration,
    linger: Duration,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even for `assign`; nothing is joined or committed.
        .set("group.id", "colloquy-kafka-tool")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, start)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut seen = 0usize;
    let mut print = |m: &BorrowedMessage<'_>| {
        writeln!(out, "{}", record(m)).expect("stdout");
        out.flush().expect("stdout");
    };
    let deadline = Instant::now() + timeout;
    while seen < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                print(&m);
                seen += 1;
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    let linger_deadline = Instant::now() + linger;
    while Instant::now() < linger_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            print(&m);
        }
    }
}
