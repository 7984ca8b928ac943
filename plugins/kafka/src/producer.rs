//! The librdkafka producer, its callbacks, the counters behind `health()`, and the watchdog
//! that replaces a producer the broker no longer accepts.
//!
//! librdkafka's own queue is the buffer: `send` only enqueues (never blocks, never touches
//! tokio), the producer's polling thread ([`PolledProducer`]) serves delivery reports,
//! and `message.timeout.ms = 0` keeps queued events retrying until the broker is back.
//!
//! Why a watchdog: an idempotent producer identifies itself with a producer id. A broker
//! that lost its state (tansu with memory storage, a wiped cluster) answers
//! UNKNOWN_PRODUCER_ID forever; librdkafka only bumps the epoch locally and retries, so the
//! queue would never drain. When the connection is up, events are pending and nothing was
//! delivered for `stall_timeout_ms`, the watchdog builds a fresh producer (a new producer
//! id), moves the queued events over in their original order, and drops the old one.

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use colloquy_plugin_api::PluginError;
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientConfig, Message};

/// What happened to the events handed to the producer. `pending` is derived:
/// `accepted - delivered - failed`.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// Producers replaced by the watchdog.
    pub restarts: AtomicU64,
    /// At least one broker connection is up (from statistics and delivery reports).
    pub connected: AtomicBool,
    /// librdkafka's fatal error, after which the producer cannot deliver anything.
    pub fatal: Mutex<Option<String>>,
}

impl Counters {
    pub fn pending(&self) -> u64 {
        // Read the completions first: a delivery report may land between the loads, and
        // this order can only over-count, never wrap below zero.
        let done = self.delivered.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire);
        self.accepted.load(Ordering::Acquire).saturating_sub(done)
    }
}

/// Events taken back from a producer being replaced, keyed by their enqueue sequence.
#[derive(Default)]
struct Salvage {
    active: AtomicBool,
    items: Mutex<Vec<Salvaged>>,
}

struct Salvaged {
    seq: usize,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
}

/// librdkafka callbacks; they run on the producer's polling thread.
pub struct BrokerContext {
    counters: Arc<Counters>,
    salvage: Arc<Salvage>,
    topic: String,
}

impl ClientContext for BrokerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // rdkafka logs through the `log` crate, which the plugin SDK does not forward;
        // route librdkafka's lines into `tracing` so that they reach the host.
        // "FAIL" is a broker connection failure: expected while the broker is down and
        // retried forever, so a warning (the buffering itself is logged by `error`).
        if fac == "FAIL" && (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            tracing::warn!(target: "librdkafka", "{fac} {message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        // Only the broker states matter; parsing into a Value avoids depending on the full
        // statistics schema.
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let up = stats
            .get("brokers")
            .and_then(|b| b.as_object())
            .is_some_and(|brokers| {
                brokers
                    .values()
                    .any(|b| b.get("state").and_then(|s| s.as_str()) == Some("UP"))
            });
        let was = self.counters.connected.swap(up, Ordering::AcqRel);
        if was != up {
            if up {
                tracing::info!("kafka: connected to the broker");
            } else {
                tracing::warn!(
                    pending = self.counters.pending(),
                    "kafka: lost the broker connection; events are buffered"
                );
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                tracing::error!(
                    "kafka: fatal producer error, no further events can be delivered: {reason}"
                );
                *self
                    .counters
                    .fatal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                if self.counters.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        pending = self.counters.pending(),
                        "kafka: all brokers down, events are buffered: {reason}"
                    );
                }
            }
            // Transport errors are retried by librdkafka; they are expected while the broker
            // is down and would flood the log at error level.
            _ => tracing::debug!("kafka: {error}: {reason}"),
        }
    }
}

impl ProducerContext for BrokerContext {
    /// The event's enqueue sequence number: restores the order when events are moved to a
    /// new producer.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::AcqRel);
                self.counters.connected.store(true, Ordering::Release);
            }
            Err((error, message)) => {
                let purged = matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                if purged && self.salvage.active.load(Ordering::Acquire) {
                    let item = Salvaged {
                        seq,
                        payload: message.payload().unwrap_or_default().to_vec(),
                        key: message.key().map(<[u8]>::to_vec),
                    };
                    self.salvage
                        .items
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(item);
                    return;
                }
                let failed = self.counters.failed.fetch_add(1, Ordering::AcqRel) + 1;
                // Every loss is counted; the log is thinned out so that a purge of a large
                // queue at shutdown does not flood it.
                if failed <= 10 || failed % 1000 == 0 {
                    let key = message.key().map(String::from_utf8_lossy);
                    tracing::error!(
                        topic = %self.topic,
                        key = ?key,
                        failed_total = failed,
                        "kafka: event could not be delivered and is lost: {error}"
                    );
                }
            }
        }
    }
}

/// How long one polling round of [`PolledProducer`] lasts: events are served as they come;
/// the round only bounds how long the thread outlives its producer's owner.
const POLL_ROUND: Duration = Duration::from_secs(1);

/// A producer with a thread that serves its events (delivery reports, logs, statistics).
///
/// rdkafka's `ThreadedProducer` polls in rounds of 100 ms, and a round ends in a spin: the
/// time left is passed to librdkafka in whole milliseconds, so the last fraction of a
/// millisecond is polled with a zero timeout again and again until the deadline. That was
/// ~0.8 % of a core on an idle server (and on the host's core under load). Rounds of a second
/// make it a tenth. Dropping this does not wait for the round to end: the thread ends after
/// it and drops the producer, which purges and flushes what is left as rdkafka does.
pub struct PolledProducer {
    producer: Arc<BaseProducer<BrokerContext>>,
    stop: Arc<AtomicBool>,
}

impl PolledProducer {
    fn new(config: &ClientConfig, context: BrokerContext) -> Result<PolledProducer, KafkaError> {
        let producer: Arc<BaseProducer<BrokerContext>> =
            Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    polled.poll(POLL_ROUND);
                }
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the polling thread: {e}"))
            })?;
        Ok(PolledProducer { producer, stop })
    }
}

impl Drop for PolledProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl std::ops::Deref for PolledProducer {
    type Target = BaseProducer<BrokerContext>;
    fn deref(&self) -> &BaseProducer<BrokerContext> {
        &self.producer
    }
}

pub type KafkaProducer = PolledProducer;

/// A producer and a handle on the topic it sends to. Sending through the handle spares
/// librdkafka a lookup of the topic by name for every message (a lock on the client and a
/// string comparison) and the message a C string of the name; the rdkafka crate's
/// `send` takes the name only, so this calls librdkafka's `rd_kafka_produceva` itself.
pub struct Sender {
    /// Declared first so that it is destroyed first: librdkafka requires every topic
    /// handle to be released before the client is.
    topic: TopicHandle,
    producer: KafkaProducer,
}

struct TopicHandle(*mut rdsys::rd_kafka_topic_t);

// librdkafka's topic handles are reference-counted and safe to use from any thread.
unsafe impl Send for TopicHandle {}
unsafe impl Sync for TopicHandle {}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released once, here,
        // before its client (field order of `Sender`).
        unsafe { rdsys::rd_kafka_topic_destroy(self.0) }
    }
}

/// The `RASA_ENVIRONMENT` header as librdkafka takes it (copied into each message).
struct EnvironmentHeader {
    name: CString,
    value: Vec<u8>,
}

impl Sender {
    fn new(producer: KafkaProducer, topic: &str) -> Result<Sender, KafkaError> {
        let name = CString::new(topic)
            .map_err(|_| KafkaError::ClientCreation(format!("topic {topic:?} contains NUL")))?;
        // SAFETY: the client pointer is valid while `producer` lives; a NULL configuration
        // means the client's default topic configuration (where `acks` etc. were set).
        let handle = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if handle.is_null() {
            return Err(KafkaError::ClientCreation(format!(
                "librdkafka refused the topic {topic:?}"
            )));
        }
        Ok(Sender {
            topic: TopicHandle(handle),
            producer,
        })
    }

    /// Enqueues one message (payload and key copied by librdkafka); `seq` comes back as the
    /// delivery report's opaque, as with the rdkafka crate's `send`.
    fn send(
        &self,
        seq: usize,
        payload: &[u8],
        key: Option<&[u8]>,
        header: &EnvironmentHeader,
    ) -> Result<(), KafkaError> {
        use rdsys::rd_kafka_vtype_t as T;
        let vu =
            |vtype: T, u: rdsys::rd_kafka_vu_s__bindgen_ty_1| rdsys::rd_kafka_vu_t { vtype, u };
        let mem = |bytes: &[u8]| rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: bytes.as_ptr() as *mut c_void,
                size: bytes.len(),
            },
        };
        let mut args = [
            vu(
                T::RD_KAFKA_VTYPE_RKT,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 { rkt: self.topic.0 },
            ),
            vu(
                T::RD_KAFKA_VTYPE_PARTITION,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 { i32_: -1 },
            ),
            vu(
                T::RD_KAFKA_VTYPE_MSGFLAGS,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                    i: rdsys::RD_KAFKA_MSG_F_COPY,
                },
            ),
            vu(T::RD_KAFKA_VTYPE_VALUE, mem(payload)),
            vu(
                T::RD_KAFKA_VTYPE_OPAQUE,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                    ptr: seq as *mut c_void,
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_HEADER,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: header.name.as_ptr(),
                        val: header.value.as_ptr() as *const c_void,
                        size: header.value.len() as isize,
                    },
                },
            ),
            // Replaced by the key when there is one.
            vu(
                T::RD_KAFKA_VTYPE_END,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
            ),
        ];
        let count = match key {
            Some(key) => {
                args[6] = vu(T::RD_KAFKA_VTYPE_KEY, mem(key));
                7
            }
            None => 6,
        };
        // SAFETY: every pointer in `args` outlives the call (librdkafka copies payload, key
        // and header with RD_KAFKA_MSG_F_COPY); the client and topic handle are live.
        let error = unsafe {
            rdsys::rd_kafka_produceva(self.producer.client().native_ptr(), args.as_ptr(), count)
        };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: a non-NULL result is an error object we own and release here.
        let code = unsafe {
            let code = rdsys::rd_kafka_error_code(error);
            rdsys::rd_kafka_error_destroy(error);
            code
        };
        Err(KafkaError::MessageProduction(code.into()))
    }
}

impl std::ops::Deref for Sender {
    type Target = KafkaProducer;
    fn deref(&self) -> &KafkaProducer {
        &self.producer
    }
}

/// The current producer plus what it takes to replace it.
pub struct Pipeline {
    current: RwLock<Arc<Sender>>,
    config: ClientConfig,
    counters: Arc<Counters>,
    salvage: Arc<Salvage>,
    topic: String,
    header: EnvironmentHeader,
    seq: AtomicUsize,
    closed: AtomicBool,
}

impl Pipeline {
    pub fn new(
        config: ClientConfig,
        topic: String,
        environment: &str,
    ) -> Result<Arc<Pipeline>, KafkaError> {
        let counters = Arc::new(Counters::default());
        let salvage = Arc::new(Salvage::default());
        let producer = create(&config, &counters, &salvage, &topic)?;
        let header = EnvironmentHeader {
            name: CString::new(crate::message::ENVIRONMENT_HEADER).expect("no NUL"),
            value: environment.as_bytes().to_vec(),
        };
        Ok(Arc::new(Pipeline {
            current: RwLock::new(Arc::new(producer)),
            config,
            counters,
            salvage,
            topic,
            header,
            seq: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }))
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Enqueues one conversation's messages in order. On a full queue the rest are not
    /// enqueued; the error carries how many were refused.
    pub fn enqueue(
        &self,
        key: Option<&str>,
        payloads: &[Vec<u8>],
    ) -> Result<(), (usize, KafkaError)> {
        // The read guard is held across the sends so that a replacement (write guard) never
        // interleaves with a batch: order and ownership stay unambiguous.
        let producer = self.current.read().unwrap_or_else(|p| p.into_inner());
        for (i, payload) in payloads.iter().enumerate() {
            let seq = self.seq.fetch_add(1, Ordering::AcqRel);
            // Count before sending: the delivery report may arrive on the polling thread
            // before `send` returns here.
            self.counters.accepted.fetch_add(1, Ordering::AcqRel);
            let key = key.map(str::as_bytes);
            if let Err(error) = producer.send(seq, payload, key, &self.header) {
                self.counters.accepted.fetch_sub(1, Ordering::AcqRel);
                return Err((payloads.len() - i, error));
            }
        }
        Ok(())
    }

    /// Stops the watchdog and drops whatever is still queued (their delivery reports count
    /// them as failed).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let producer = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        producer.purge(PurgeConfig::default().queue().inflight());
    }

    /// Replaces the producer, moving its queued events to the new one in order.
    fn replace(&self) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let fresh = match create(&self.config, &self.counters, &self.salvage, &self.topic) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("kafka: could not create a replacement producer: {e}");
                return;
            }
        };
        self.salvage.active.store(true, Ordering::Release);
        current.purge(PurgeConfig::default().queue().inflight());
        // The purge's delivery reports are served by the old producer's polling thread;
        // flushing waits until all of them were handed to `delivery`.
        if let Err(e) = current.flush(Duration::from_secs(10)) {
            tracing::warn!("kafka: old producer did not drain completely: {e}");
        }
        self.salvage.active.store(false, Ordering::Release);
        let mut items =
            std::mem::take(&mut *self.salvage.items.lock().unwrap_or_else(|p| p.into_inner()));
        items.sort_by_key(|item| item.seq);
        let moved = items.len();
        for Salvaged { seq, payload, key } in items {
            if let Err(error) = fresh.send(seq, &payload, key.as_deref(), &self.header) {
                self.counters.failed.fetch_add(1, Ordering::AcqRel);
                tracing::error!("kafka: event lost while replacing the producer: {error}");
            }
        }
        let old = std::mem::replace(&mut *current, Arc::new(fresh));
        drop(current);
        self.counters.restarts.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(
            moved,
            "kafka: no delivery progress while connected; replaced the producer (new producer id)"
        );
        drop(old);
    }
}

fn create(
    config: &ClientConfig,
    counters: &Arc<Counters>,
    salvage: &Arc<Salvage>,
    topic: &str,
) -> Result<Sender, KafkaError> {
    let context = BrokerContext {
        counters: counters.clone(),
        salvage: salvage.clone(),
        topic: topic.to_string(),
    };
    Sender::new(PolledProducer::new(config, context)?, topic)
}

/// Starts the watchdog thread; it ends when the pipeline is dropped or closed. A plain
/// thread: it must not depend on any tokio runtime, and it blocks while replacing.
pub fn start_watchdog(pipeline: &Arc<Pipeline>, stall: Duration) {
    let weak: Weak<Pipeline> = Arc::downgrade(pipeline);
    let spawned = std::thread::Builder::new()
        .name("kafka-watchdog".into())
        .spawn(move || {
            let tick = Duration::from_millis(250).min(stall);
            let mut last_delivered = 0;
            let mut progress_at = Instant::now();
            loop {
                std::thread::sleep(tick);
                let Some(pipeline) = weak.upgrade() else {
                    return;
                };
                if pipeline.closed.load(Ordering::Acquire) {
                    return;
                }
                let c = &pipeline.counters;
                let delivered =
                    c.delivered.load(Ordering::Acquire) + c.failed.load(Ordering::Acquire);
                let waiting = c.pending() > 0 && c.connected.load(Ordering::Acquire);
                if delivered != last_delivered || !waiting {
                    last_delivered = delivered;
                    progress_at = Instant::now();
                } else if progress_at.elapsed() >= stall {
                    pipeline.replace();
                    progress_at = Instant::now();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("kafka: could not start the watchdog thread: {e}");
    }
}

/// The error kind for a refused enqueue.
pub fn enqueue_error(refused: usize, error: &KafkaError) -> PluginError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => PluginError::unavailable(format!(
            "kafka: buffer full, {refused} event(s) dropped (queue_size reached while the broker is slow or down)"
        )),
        _ => PluginError::backend(format!("kafka: {refused} event(s) dropped: {error}")),
    }
}
