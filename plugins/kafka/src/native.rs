//! The producer in Rust (`client: native`, the default for PLAINTEXT; also SASL_PLAINTEXT
//! with PLAIN or SCRAM when asked for): events gather in an outbox and one thread of the
//! plugin's sends them in batches with the `rskafka` client.
//!
//! Why not librdkafka here: every message librdkafka takes costs ~1.2 µs on the caller's
//! thread and ~1.5 µs more in its own threads (allocation, queueing, delivery reports), which
//! is a tenth of a whole append at Colloquy's speeds. Here `publish` renders the events
//! straight into the outbox's one buffer under a mutex, and the sender, which wakes once per
//! batch, not per event, swaps that buffer for an empty one: an event costs no allocation of
//! its own, and no thread frees what another allocated (which costs mimalloc extra work).
//!
//! Guarantees, the same as Rasa's (at least once, in order per partition):
//! - an event is counted delivered only when the broker acknowledged it (`acks = all`);
//! - while the broker is unreachable, or answers with an error worth retrying, the batch is
//!   retried forever (with back-off) and new events wait behind it in the outbox, bounded by
//!   `queue_size`; a batch is never reordered with the next one;
//! - a request whose answer is lost (a broker that stops mid-request) is sent again, so an
//!   event can arrive twice, as with Rasa's own producer (no idempotence here; the
//!   `librdkafka` client has it).
//!
//! Partitions: with `partition_by_sender` the partition is CRC-32 of the key modulo the
//! partition count, as librdkafka's default `consistent_random` partitioner computes it, so a
//! conversation lands in the partition that Rasa would have chosen. Keyless events go to
//! one partition per batch, in turn.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use colloquy_plugin_api::PluginError;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use tokio::sync::Notify;

use crate::config::{KafkaConfig, SaslMechanism, SecurityProtocol};
use crate::producer::Counters;

/// How long the sender gathers events after the first one arrives (librdkafka's `linger.ms`
/// default).
const LINGER: Duration = Duration::from_millis(5);
/// The largest batch sent in one request, in messages and payload bytes (below the broker's
/// default `message.max.bytes` of 1 MiB for a whole record batch).
const MAX_BATCH_MESSAGES: usize = 10_000;
const MAX_BATCH_BYTES: usize = 900_000;
/// The largest single event accepted (librdkafka's `message.max.bytes` default).
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;
/// An emptied batch buffer keeps at most this much memory for reuse (after an outage it may
/// have grown to `queue_size` events).
const KEEP_BYTES: usize = 4 << 20;
const KEEP_ENTRIES: usize = 16 << 10;
/// Back-off between attempts while the broker is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long one produce request may take before the connection is considered dead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// While idle, the connection is checked this often, so that `health()` tells the truth.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Settings of the native client, taken from the YAML section.
#[derive(Clone, Debug)]
pub struct NativeSettings {
    pub servers: Vec<String>,
    pub topic: String,
    pub client_id: Option<String>,
    pub sasl: Option<SaslConfig>,
    pub environment: Vec<u8>,
}

/// The SASL settings of the native producer: `None` when the section needs something only
/// librdkafka provides (TLS, GSSAPI, OAUTHBEARER, raw `librdkafka` properties), `Some(None)`
/// for PLAINTEXT. The one rule of what the native producer serves.
fn native_sasl(config: &KafkaConfig) -> Option<Option<SaslConfig>> {
    if !config.librdkafka.is_empty() {
        return None;
    }
    match config.protocol() {
        SecurityProtocol::Plaintext => Some(None),
        SecurityProtocol::SaslPlaintext => {
            let credentials = Credentials::new(
                config.sasl_username.clone().unwrap_or_default(),
                config.sasl_password.clone().unwrap_or_default(),
            );
            match config.mechanism() {
                SaslMechanism::Plain => Some(Some(SaslConfig::Plain(credentials))),
                SaslMechanism::ScramSha256 => Some(Some(SaslConfig::ScramSha256(credentials))),
                SaslMechanism::ScramSha512 => Some(Some(SaslConfig::ScramSha512(credentials))),
                SaslMechanism::Gssapi | SaslMechanism::OauthBearer => None,
            }
        }
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => None,
    }
}

/// Whether the native producer can serve these settings.
pub fn supports(config: &KafkaConfig) -> bool {
    native_sasl(config).is_some()
}

impl NativeSettings {
    /// `None` when the native producer cannot serve the section (see [`supports`]).
    pub fn from_config(config: &KafkaConfig, environment: &str) -> Option<NativeSettings> {
        let sasl = native_sasl(config)?;
        Some(NativeSettings {
            servers: config
                .url
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            topic: config.topic.clone(),
            client_id: config.client_id.clone(),
            sasl,
            environment: environment.as_bytes().to_vec(),
        })
    }
}

/// One event waiting for the broker: where its key and its message lie in the buffer.
struct Entry {
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

/// Events in order, their keys and messages rendered back to back into one buffer.
#[derive(Default)]
struct Events {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Events {
    fn payload(&self, entry: &Entry) -> &[u8] {
        &self.bytes[entry.payload.clone()]
    }

    fn key(&self, entry: &Entry) -> Option<&[u8]> {
        entry.key.clone().map(|range| &self.bytes[range])
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the buffer for reuse, keeping a bounded amount of its memory.
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.bytes.shrink_to(KEEP_BYTES);
        self.entries.shrink_to(KEEP_ENTRIES);
    }
}

#[derive(Default)]
struct Outbox {
    events: Events,
    /// The sender waits for work; the next enqueue must wake it.
    sender_waiting: bool,
}

struct Shared {
    outbox: Mutex<Outbox>,
    work: Notify,
    stop: Notify,
    stopping: AtomicBool,
    counters: Counters,
    queue_size: u64,
}

/// The outbox and the thread that empties it.
pub struct NativePipeline {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Why the outbox refused events.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// An event is not a JSON object; the message says why.
    #[error("{}", .0.message)]
    Invalid(PluginError),
    #[error("buffer full ({pending} of queue_size {queue_size} pending)")]
    Full { pending: u64, queue_size: u64 },
    #[error("event of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte message limit")]
    TooLarge { size: usize },
    #[error("the producer is closed")]
    Closed,
}

impl EnqueueError {
    /// The error `publish` returns for `count` refused events.
    pub fn into_plugin_error(self, count: usize) -> PluginError {
        let text = format!("kafka: {self}, {count} event(s) dropped");
        match self {
            EnqueueError::Invalid(error) => error,
            EnqueueError::TooLarge { .. } => PluginError::invalid_input(text),
            EnqueueError::Full { .. } | EnqueueError::Closed => PluginError::unavailable(text),
        }
    }
}

impl NativePipeline {
    /// Starts the sender thread. It connects in the background: the broker may be down.
    pub fn start(settings: NativeSettings, queue_size: u64) -> std::io::Result<NativePipeline> {
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            work: Notify::new(),
            stop: Notify::new(),
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            queue_size,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("colloquy-kafka".into())
                .spawn(move || {
                    runtime.block_on(async {
                        tokio::select! {
                            () = Sender::new(settings, shared.clone()).run() => {}
                            () = stopped(&shared) => {}
                        }
                    })
                })?
        };
        Ok(NativePipeline {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Renders one conversation's events (Rasa's message format, see [`crate::message`])
    /// into the outbox, all or none; `keyed` makes the conversation id their key.
    pub fn enqueue(
        &self,
        conversation_id: &str,
        keyed: bool,
        events: &[impl AsRef<str>],
    ) -> Result<(), EnqueueError> {
        let counters = &self.shared.counters;
        let mut outbox = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
        // Rendered first, so that a malformed event is reported as such whatever the state.
        let buffer = &mut outbox.events;
        let (bytes_before, entries_before) = (buffer.bytes.len(), buffer.entries.len());
        let accepted = render_all(buffer, conversation_id, keyed, events).and_then(|()| {
            if self.shared.stopping.load(Ordering::Acquire) {
                return Err(EnqueueError::Closed);
            }
            // Checked under the lock, so that concurrent publishers cannot overshoot the bound.
            let pending = counters.pending();
            if pending + events.len() as u64 > self.shared.queue_size {
                return Err(EnqueueError::Full {
                    pending,
                    queue_size: self.shared.queue_size,
                });
            }
            Ok(())
        });
        if let Err(error) = accepted {
            buffer.bytes.truncate(bytes_before);
            buffer.entries.truncate(entries_before);
            return Err(error);
        }
        counters
            .accepted
            .fetch_add(events.len() as u64, Ordering::AcqRel);
        if std::mem::take(&mut outbox.sender_waiting) {
            drop(outbox);
            self.shared.work.notify_one();
        }
        Ok(())
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Stops the sender; whatever was not delivered is counted as failed.
    pub fn close(&self) {
        {
            let _outbox = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.stopping.store(true, Ordering::Release);
        }
        self.shared.stop.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("kafka: the sender thread panicked");
            }
        }
        let counters = &self.shared.counters;
        let lost = counters.pending();
        counters.failed.fetch_add(lost, Ordering::AcqRel);
        self.shared
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .clear();
    }
}

/// Appends the events to `buffer`; on error the caller truncates what was appended.
fn render_all(
    buffer: &mut Events,
    conversation_id: &str,
    keyed: bool,
    events: &[impl AsRef<str>],
) -> Result<(), EnqueueError> {
    let key = keyed.then(|| {
        let start = buffer.bytes.len();
        buffer.bytes.extend_from_slice(conversation_id.as_bytes());
        start..buffer.bytes.len()
    });
    for event in events {
        let start = buffer.bytes.len();
        crate::message::render_into(&mut buffer.bytes, conversation_id, event.as_ref())
            .map_err(EnqueueError::Invalid)?;
        let size = buffer.bytes.len() - start;
        if size > MAX_MESSAGE_BYTES {
            return Err(EnqueueError::TooLarge { size });
        }
        buffer.entries.push(Entry {
            key: key.clone(),
            payload: start..buffer.bytes.len(),
        });
    }
    Ok(())
}

impl Drop for NativePipeline {
    fn drop(&mut self) {
        self.close();
    }
}

async fn stopped(shared: &Shared) {
    loop {
        let notified = shared.stop.notified();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// A live connection: one partition client per partition of the topic (each holds the
/// connections it needs).
struct Connection {
    partitions: Vec<Arc<PartitionClient>>,
}

/// The loop of the sender thread.
struct Sender {
    settings: NativeSettings,
    shared: Arc<Shared>,
    connection: Option<Connection>,
    /// The events being delivered (all the outbox held when the sender took them); new
    /// events wait in the outbox until this is empty, then the two buffers swap.
    batch: Events,
    /// Where the next keyless batch goes.
    next_partition: usize,
    retry: Duration,
    /// Logged once per outage, not once per attempt.
    outage_logged: bool,
    /// How many events of the batch the current attempt sends, and the most it may send.
    sending: usize,
    batch_limit: usize,
}

/// What a failed attempt means for the events in it.
enum Failure {
    /// Try again later (the broker is away, busy, or the topic is not there yet).
    Retry(String),
    /// The broker refused the records themselves (too large, invalid): sending them again
    /// cannot help. The batch is split until the one refused event is found and dropped.
    Refused(String),
}

impl Sender {
    fn new(settings: NativeSettings, shared: Arc<Shared>) -> Sender {
        Sender {
            settings,
            shared,
            connection: None,
            batch: Events::default(),
            next_partition: 0,
            retry: RETRY_MIN,
            outage_logged: false,
            sending: 0,
            batch_limit: MAX_BATCH_MESSAGES,
        }
    }

    async fn run(mut self) {
        // Connect at once, so that health() is true from the start when the broker is up.
        self.check_connection().await;
        loop {
            if self.batch.is_empty() && !self.wait_for_work().await {
                continue;
            }
            match self.deliver().await {
                Ok(()) => self.succeeded(),
                Err(Failure::Refused(reason)) => self.refused(reason),
                Err(Failure::Retry(reason)) => self.failed(reason).await,
            }
        }
    }

    /// Waits until the outbox has events and takes them all (after lingering, so that the
    /// batch is worth a request). Returns false when it only checked the connection.
    async fn wait_for_work(&mut self) -> bool {
        let shared = self.shared.clone();
        let notified = {
            let mut outbox = shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
            if outbox.events.is_empty() {
                outbox.sender_waiting = true;
                Some(shared.work.notified())
            } else {
                None
            }
        };
        if let Some(notified) = notified {
            if tokio::time::timeout(IDLE_CHECK, notified).await.is_err() {
                self.check_connection().await;
                return false;
            }
        }
        tokio::time::sleep(LINGER).await;
        // The batch is empty here: its buffer goes back to the outbox for the next events.
        self.batch.clear();
        let mut outbox = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
        outbox.sender_waiting = false;
        std::mem::swap(&mut outbox.events, &mut self.batch);
        !self.batch.is_empty()
    }

    /// While idle: keeps `connected` true only while the broker answers.
    async fn check_connection(&mut self) {
        let outcome = match &self.connection {
            // A small request to the partition's leader, the broker the events go to.
            Some(connection) => match connection.partitions.first() {
                Some(partition) => {
                    match tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        partition.get_offset(OffsetAt::Latest),
                    )
                    .await
                    {
                        Ok(outcome) => outcome.map(drop).map_err(classify),
                        Err(_) => Err(Failure::Retry("no answer".to_string())),
                    }
                }
                None => Ok(()),
            },
            None => self.connect().await.map(drop),
        };
        match outcome {
            Ok(()) => self.set_connected(true),
            Err(Failure::Retry(e) | Failure::Refused(e)) => {
                self.connection = None;
                self.set_connected(false);
                tracing::debug!("kafka: broker check failed: {e}");
            }
        }
    }

    fn set_connected(&self, up: bool) {
        let was = self.shared.counters.connected.swap(up, Ordering::AcqRel);
        if up && !was {
            tracing::info!("kafka: connected to the broker");
        } else if was && !up {
            tracing::warn!(
                pending = self.shared.counters.pending(),
                "kafka: lost the broker connection; events are buffered"
            );
        }
    }

    async fn connect(&mut self) -> Result<&Connection, Failure> {
        if self.connection.is_none() {
            let mut builder =
                ClientBuilder::new(self.settings.servers.clone()).backoff_config(BackoffConfig {
                    init_backoff: RETRY_MIN,
                    max_backoff: RETRY_MAX,
                    base: 3.0,
                    // The client's own retries end here; this loop retries forever.
                    deadline: Some(Duration::from_secs(1)),
                });
            if let Some(id) = &self.settings.client_id {
                builder = builder.client_id(id.as_str());
            }
            if let Some(sasl) = &self.settings.sasl {
                builder = builder.sasl_config(sasl.clone());
            }
            let client = builder.build().await.map_err(classify)?;
            let topic = &self.settings.topic;
            let count = client
                .list_topics()
                .await
                .map_err(classify)?
                .into_iter()
                .find(|t| &t.name == topic)
                .map(|t| t.partitions.len())
                .unwrap_or(0);
            if count == 0 {
                // Asking for the topic's leader makes a broker that creates topics on demand
                // create it, as librdkafka's producer does; the next attempt finds it.
                let _ = client
                    .partition_client(topic.clone(), 0, UnknownTopicHandling::Error)
                    .await;
                return Err(Failure::Retry(format!(
                    "topic {topic:?} does not exist (yet)"
                )));
            }
            let mut partitions = Vec::with_capacity(count);
            for p in 0..count {
                let partition = client
                    .partition_client(topic.clone(), p as i32, UnknownTopicHandling::Error)
                    .await
                    .map_err(classify)?;
                partitions.push(Arc::new(partition));
            }
            self.connection = Some(Connection { partitions });
        }
        self.connection
            .as_ref()
            .ok_or_else(|| Failure::Retry("not connected".to_string()))
    }

    /// Sends the batch, one request per partition at a time, and removes what the broker
    /// acknowledged. On error the rest stays in the batch, in order.
    async fn deliver(&mut self) -> Result<(), Failure> {
        let partitions = self.connect().await?.partitions.clone();
        if self.batch.is_empty() {
            return Ok(());
        }
        let count = partitions.len();
        let keyless = self.next_partition % count;
        let batch = &self.batch;
        let target = |e: &Entry| match batch.key(e) {
            Some(key) => (crc32fast::hash(key) as usize) % count,
            None => keyless,
        };
        // One request per partition, within the size limits; after a refusal, smaller ones
        // until the refused event is alone.
        let limit = batch.len().min(self.batch_limit);
        let mut bytes = 0;
        self.sending = 0;
        for entry in &batch.entries[..limit] {
            bytes += entry.payload.len();
            if self.sending > 0 && bytes > MAX_BATCH_BYTES {
                break;
            }
            self.sending += 1;
        }
        let mut per_partition: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, entry) in batch.entries[..self.sending].iter().enumerate() {
            per_partition.entry(target(entry)).or_default().push(i);
        }
        let timestamp = rskafka::chrono::Utc::now();
        let environment = &self.settings.environment;
        let record = |e: &Entry| Record {
            key: batch.key(e).map(<[u8]>::to_vec),
            value: Some(batch.payload(e).to_vec()),
            headers: BTreeMap::from([(
                crate::message::ENVIRONMENT_HEADER.to_string(),
                environment.clone(),
            )]),
            timestamp,
        };
        let requests = per_partition.iter().map(|(&p, indices)| {
            let records: Vec<Record> = indices.iter().map(|&i| record(&batch.entries[i])).collect();
            let client = partitions[p].clone();
            async move {
                let outcome = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    client.produce(records, Compression::NoCompression),
                )
                .await;
                (p, outcome)
            }
        });
        let outcomes = futures::future::join_all(requests).await;

        let mut delivered = vec![false; self.batch.len()];
        let mut failure = None;
        for (p, outcome) in outcomes {
            match outcome {
                Ok(Ok(_offsets)) => {
                    for &i in &per_partition[&p] {
                        delivered[i] = true;
                    }
                }
                Ok(Err(e)) => failure = Some(classify(e)),
                Err(_) => {
                    failure = Some(Failure::Retry("the broker did not answer in 30 s".into()))
                }
            }
        }
        let done = delivered.iter().filter(|&&d| d).count();
        if done > 0 {
            self.shared
                .counters
                .delivered
                .fetch_add(done as u64, Ordering::AcqRel);
            let mut flags = delivered.into_iter();
            self.batch
                .entries
                .retain(|_| !flags.next().unwrap_or(false));
        }
        // Keyless events spread over the partitions batch by batch.
        self.next_partition = self.next_partition.wrapping_add(1);
        match failure {
            None => Ok(()),
            Some(failure) => Err(failure),
        }
    }

    /// The broker refused the records of the last attempt: halve the attempts until the
    /// refused event is sent alone, then drop it (counted failed, logged).
    fn refused(&mut self, reason: String) {
        if self.sending > 1 {
            self.batch_limit = self.sending / 2;
            tracing::debug!(
                limit = self.batch_limit,
                "kafka: the broker refused a batch, sending smaller ones: {reason}"
            );
            return;
        }
        if !self.batch.is_empty() {
            self.batch.entries.remove(0);
            self.shared.counters.failed.fetch_add(1, Ordering::AcqRel);
            tracing::error!("kafka: the broker refused an event, dropped: {reason}");
        }
    }

    fn succeeded(&mut self) {
        self.batch_limit = (self.batch_limit * 2).min(MAX_BATCH_MESSAGES);
        if std::mem::take(&mut self.outage_logged) {
            // The outage was logged by `failed`: one line for its end too.
            self.shared
                .counters
                .connected
                .store(true, Ordering::Release);
            tracing::info!("kafka: delivering again");
        } else {
            self.set_connected(true);
        }
        self.retry = RETRY_MIN;
    }

    async fn failed(&mut self, reason: String) {
        // Rebuild the connection: a broker that came back may have lost the topic or moved
        // its partitions.
        self.connection = None;
        // One warning per outage, with its reason (not also `set_connected`'s).
        self.shared
            .counters
            .connected
            .store(false, Ordering::Release);
        if !self.outage_logged {
            tracing::warn!(
                pending = self.shared.counters.pending(),
                "kafka: cannot deliver, events are buffered and retried: {reason}"
            );
            self.outage_logged = true;
        } else {
            tracing::debug!("kafka: retrying after: {reason}");
        }
        tokio::time::sleep(self.retry).await;
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }
}

/// Errors that can never succeed on retry lose the batch; everything else is retried.
fn classify(error: ClientError) -> Failure {
    match &error {
        ClientError::ServerError {
            protocol_error:
                ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::CorruptMessage,
            ..
        } => Failure::Refused(error.to_string()),
        _ => Failure::Retry(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_broker() -> NativeSettings {
        // Nothing listens on a port just bound and released: connecting fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        NativeSettings {
            servers: vec![format!("127.0.0.1:{port}")],
            topic: "t".into(),
            client_id: None,
            sasl: None,
            environment: b"test".to_vec(),
        }
    }

    fn events(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_outbox_refuses_what_it_cannot_take_and_close_counts_the_rest_failed() {
        let pipeline = NativePipeline::start(unreachable_broker(), 3).unwrap();
        let counters = pipeline.counters();
        pipeline.enqueue("a", true, &events(&["{}", "{}"])).unwrap();
        assert_eq!(counters.pending(), 2);
        // All or none: two more do not fit beside the two waiting.
        let full = pipeline.enqueue("b", false, &events(&["{}", "{}"]));
        assert!(
            matches!(
                full,
                Err(EnqueueError::Full {
                    pending: 2,
                    queue_size: 3
                })
            ),
            "{full:?}"
        );
        let large = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        let large = pipeline.enqueue("b", false, &[large]);
        assert!(
            matches!(large, Err(EnqueueError::TooLarge { .. })),
            "{large:?}"
        );
        let invalid = pipeline.enqueue("b", false, &events(&["[1]"]));
        assert!(
            matches!(invalid, Err(EnqueueError::Invalid(_))),
            "{invalid:?}"
        );
        assert_eq!(counters.accepted.load(Ordering::Acquire), 2);
        // What was refused left nothing behind: the outbox holds the first two, rendered.
        {
            let outbox = pipeline.shared.outbox.lock().unwrap();
            let queued = &outbox.events;
            let rendered: Vec<_> = queued
                .entries
                .iter()
                .map(|e| (queued.key(e), queued.payload(e)))
                .collect();
            let first: (Option<&[u8]>, &[u8]) = (Some(b"a"), br#"{"sender_id":"a"}"#);
            assert_eq!(rendered, vec![first, first]);
            assert_eq!(queued.bytes.len(), 1 + 2 * br#"{"sender_id":"a"}"#.len());
        }

        pipeline.close();
        assert_eq!(counters.failed.load(Ordering::Acquire), 2);
        assert_eq!(counters.pending(), 0);
        assert!(!counters.connected.load(Ordering::Acquire));
        let closed = pipeline.enqueue("c", false, &events(&["{}"]));
        assert!(matches!(closed, Err(EnqueueError::Closed)), "{closed:?}");
    }
}
