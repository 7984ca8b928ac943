//! Kafka event broker (`type: kafka`): publishes each new event as one Rasa-format JSON
//! message, buffering in librdkafka's bounded queue while the broker is unreachable.
//!
//! Modules: [`config`] (the YAML section), [`message`] (the wire format), [`producer`]
//! (librdkafka callbacks, counters and the stall watchdog). See README.md for the behaviour.

// The host's allocator: faster than glibc's on the small, short-lived strings of every
// event. Whatever crosses the ABI is an abi_stable type, freed by the side that allocated it.
#[global_allocator]
static ALLOCATOR: colloquy_plugin_api::sdk::allocator::MiMalloc =
    colloquy_plugin_api::sdk::allocator::MiMalloc;

pub mod config;
pub mod message;
pub mod native;
pub mod producer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use colloquy_plugin_api::sdk::{EventBrokerPlugin, PluginContext};
use colloquy_plugin_api::{export_plugin, PluginError};
use rdkafka::error::KafkaError;
use serde_json::{json, Value};

use crate::config::KafkaConfig;
use crate::native::{EnqueueError, NativePipeline, NativeSettings};
use crate::producer::{Counters, Pipeline};

export_plugin! {
    name: "kafka",
    version: env!("CARGO_PKG_VERSION"),
    event_broker: new_kafka_broker,
}

/// The constructor `export_plugin!` calls. Never contacts the broker: it may be down at
/// start-up, and events simply wait in the queue until it is reachable.
pub fn new_kafka_broker(
    config_json: &str,
    _ctx: &PluginContext,
) -> Result<KafkaBroker, PluginError> {
    KafkaBroker::from_json(config_json)
}

pub struct KafkaBroker {
    backend: Backend,
    topic: String,
    partition_by_sender: bool,
    queue_size: u64,
    close_timeout_ms: u64,
    closed: AtomicBool,
}

/// The producer behind the broker (see [`config::ClientChoice`]).
enum Backend {
    Native(NativePipeline),
    Librdkafka(Arc<Pipeline>),
}

impl Backend {
    fn counters(&self) -> &Counters {
        match self {
            Backend::Native(pipeline) => pipeline.counters(),
            Backend::Librdkafka(pipeline) => pipeline.counters(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Native(_) => "native",
            Backend::Librdkafka(_) => "librdkafka",
        }
    }
}

impl KafkaBroker {
    pub fn from_json(config_json: &str) -> Result<Self, PluginError> {
        Self::new(KafkaConfig::from_json(config_json)?)
    }

    pub fn new(config: KafkaConfig) -> Result<Self, PluginError> {
        // The `RASA_ENVIRONMENT` header is read once, at start-up.
        let environment = message::environment();
        let native = config
            .uses_native()
            .then(|| NativeSettings::from_config(&config, &environment))
            .flatten();
        let backend = match native {
            Some(settings) => {
                let pipeline =
                    NativePipeline::start(settings, config.queue_size()).map_err(|e| {
                        PluginError::backend(format!(
                            "kafka: cannot start the producer thread: {e}"
                        ))
                    })?;
                Backend::Native(pipeline)
            }
            None => {
                let pipeline =
                    Pipeline::new(config.client_config(), config.topic.clone(), &environment)
                        .map_err(|e| creation_error(&config, e))?;
                producer::start_watchdog(
                    &pipeline,
                    Duration::from_millis(config.stall_timeout_ms()),
                );
                Backend::Librdkafka(pipeline)
            }
        };
        tracing::info!(
            servers = %config.url,
            topic = %config.topic,
            protocol = %config.protocol(),
            client = backend.name(),
            queue_size = config.queue_size(),
            "kafka event broker created"
        );
        Ok(KafkaBroker {
            backend,
            topic: config.topic.clone(),
            partition_by_sender: config.partition_by_sender,
            queue_size: config.queue_size(),
            close_timeout_ms: config.close_timeout_ms(),
            closed: AtomicBool::new(false),
        })
    }

    /// Counts refused events as dropped and logs them: an event is never lost silently.
    fn refuse(
        &self,
        conversation_id: &str,
        count: usize,
        error: PluginError,
    ) -> Result<(), PluginError> {
        let total = self
            .backend
            .counters()
            .dropped
            .fetch_add(count as u64, Ordering::AcqRel)
            + count as u64;
        tracing::error!(
            conversation_id,
            dropped = count,
            dropped_total = total,
            pending = self.backend.counters().pending(),
            "{}",
            error.message
        );
        Err(error.with_details(json!({"dropped": count})))
    }

    /// Waits (without blocking a thread) until every accepted event is delivered or failed.
    async fn wait_delivered(&self, timeout_ms: u64) -> Result<(), PluginError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let pending = self.backend.counters().pending();
            if pending == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PluginError::timeout(format!(
                    "kafka: {pending} event(s) still pending after {timeout_ms} ms"
                ))
                .with_details(json!({"pending": pending})));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        }
    }

    fn fatal_error(&self) -> Option<String> {
        self.backend
            .counters()
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventBrokerPlugin for KafkaBroker {
    async fn publish(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<(), PluginError> {
        let lent: Vec<&str> = events.iter().map(String::as_str).collect();
        self.publish_borrowed(&conversation_id, &lent).await
    }

    /// Events are rendered into the outbox (or librdkafka's messages) straight from the
    /// host's strings: no copy of them first.
    async fn publish_borrowed<'a>(
        &'a self,
        conversation_id: &'a str,
        events: &'a [&'a str],
    ) -> Result<(), PluginError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.closed.load(Ordering::Acquire) {
            let e = PluginError::unavailable(format!(
                "kafka: broker closed, {} event(s) dropped",
                events.len()
            ));
            return self.refuse(conversation_id, events.len(), e);
        }
        match &self.backend {
            // Renders into its outbox, all or none, and checks the bound there.
            Backend::Native(pipeline) => {
                match pipeline.enqueue(conversation_id, self.partition_by_sender, events) {
                    Ok(()) => Ok(()),
                    // A malformed event refuses the whole call, and nothing was queued.
                    Err(EnqueueError::Invalid(e)) => Err(e),
                    Err(error) => {
                        let count = events.len();
                        self.refuse(conversation_id, count, error.into_plugin_error(count))
                    }
                }
            }
            Backend::Librdkafka(pipeline) => {
                // Render everything first so that a malformed event refuses the whole batch
                // instead of leaving a gap in the conversation's stream.
                let payloads = events
                    .iter()
                    .map(|event| message::render(conversation_id, event))
                    .collect::<Result<Vec<_>, _>>()?;
                // Refuse the batch as a whole when it cannot fit, rather than sending a prefix.
                let pending = self.backend.counters().pending();
                if pending + payloads.len() as u64 > self.queue_size {
                    let e = PluginError::unavailable(format!(
                        "kafka: buffer full ({pending} of queue_size {} pending), {} event(s) dropped",
                        self.queue_size,
                        payloads.len()
                    ));
                    return self.refuse(conversation_id, payloads.len(), e);
                }
                let key = self.partition_by_sender.then_some(conversation_id);
                match pipeline.enqueue(key, &payloads) {
                    Ok(()) => Ok(()),
                    Err((refused, error)) => self.refuse(
                        conversation_id,
                        refused,
                        producer::enqueue_error(refused, &error),
                    ),
                }
            }
        }
    }

    async fn flush(&self, timeout_ms: u64) -> Result<(), PluginError> {
        self.wait_delivered(timeout_ms).await
    }

    async fn health(&self) -> Result<Value, PluginError> {
        let c = &self.backend.counters();
        let connected = c.connected.load(Ordering::Acquire);
        let fatal = self.fatal_error();
        Ok(json!({
            "ok": connected && fatal.is_none() && !self.closed.load(Ordering::Acquire),
            "connected": connected,
            "pending": c.pending(),
            "delivered": c.delivered.load(Ordering::Acquire),
            "failed": c.failed.load(Ordering::Acquire),
            "dropped": c.dropped.load(Ordering::Acquire),
            "topic": self.topic,
            "queue_size": self.queue_size,
            "producer_restarts": c.restarts.load(Ordering::Acquire),
            "client": self.backend.name(),
            "fatal_error": fatal,
        }))
    }

    async fn close(&self) -> Result<(), PluginError> {
        // New events are refused (with an error) from now on; queued ones get the deadline.
        self.closed.store(true, Ordering::Release);
        let outcome = self.wait_delivered(self.close_timeout_ms).await;
        if let Err(e) = &outcome {
            let pending = self.backend.counters().pending();
            tracing::error!(
                pending,
                "kafka: closing with undelivered events, they are lost: {}",
                e.message
            );
        }
        // What is left counts as failed, so the counters stay exact. librdkafka: purging
        // turns it into failed delivery reports; it also stops the watchdog.
        match &self.backend {
            Backend::Native(pipeline) => pipeline.close(),
            Backend::Librdkafka(pipeline) => pipeline.close(),
        }
        outcome
    }
}

/// Maps librdkafka's refusal of the settings to a config error naming our key.
fn creation_error(config: &KafkaConfig, error: KafkaError) -> PluginError {
    let text = error.to_string();
    let ours = [
        ("ssl.ca.location", "ssl_cafile"),
        ("ssl.certificate.location", "ssl_certfile"),
        ("ssl.key.location", "ssl_keyfile"),
        (
            "ssl.endpoint.identification.algorithm",
            "ssl_check_hostname",
        ),
        ("sasl.mechanism", "sasl_mechanism"),
        ("sasl.username", "sasl_username"),
        ("sasl.password", "sasl_password"),
        ("security.protocol", "security_protocol"),
        ("bootstrap.servers", "url"),
        ("client.id", "client_id"),
        ("queue.buffering.max.messages", "queue_size"),
    ];
    let key = config
        .librdkafka
        .keys()
        .find(|k| text.contains(k.as_str()))
        .map(|k| format!("librdkafka.{k}"))
        .or_else(|| {
            ours.iter()
                .find(|(prop, _)| text.contains(prop))
                .map(|(_, key)| key.to_string())
        });
    match key {
        Some(key) => PluginError::config(format!(
            "config key `{key}`: kafka producer refused the settings: {text}"
        ))
        .with_details(json!({"key": key})),
        None => PluginError::config(format!("kafka producer refused the settings: {text}")),
    }
}
