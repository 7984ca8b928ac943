//! The librdkafka producer, its callbacks and the counters behind `health()`.
//!
//! librdkafka's own queue is the buffer: `send` only enqueues (never blocks, never touches
//! tokio), a background thread of `ThreadedProducer` serves delivery reports continuously,
//! and `message.timeout.ms = 0` keeps queued events retrying until the broker is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use colloquy_plugin_api::PluginError;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;

/// What happened to the events handed to the producer. `pending` is derived:
/// `accepted - delivered - failed`.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
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

/// librdkafka callbacks; they run on the producer's polling thread.
pub struct BrokerContext {
    pub counters: Arc<Counters>,
    pub topic: String,
}

impl ClientContext for BrokerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // rdkafka logs through the `log` crate, which the plugin SDK does not forward;
        // route librdkafka's lines into `tracing` so that they reach the host.
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
                self.counters.connected.store(false, Ordering::Release);
                tracing::warn!(
                    pending = self.counters.pending(),
                    "kafka: all brokers down, events are buffered: {reason}"
                );
            }
            // Transport errors are retried by librdkafka; they are expected while the broker
            // is down and would flood the log at error level.
            _ => tracing::warn!("kafka: {error}: {reason}"),
        }
    }
}

impl ProducerContext for BrokerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::AcqRel);
                self.counters.connected.store(true, Ordering::Release);
            }
            Err((error, message)) => {
                self.counters.failed.fetch_add(1, Ordering::AcqRel);
                let key = message.key().map(String::from_utf8_lossy);
                tracing::error!(
                    topic = %self.topic,
                    key = ?key,
                    "kafka: event could not be delivered and is lost: {error}"
                );
            }
        }
    }
}

pub type KafkaProducer = ThreadedProducer<BrokerContext>;

/// Enqueues one conversation's messages in order. Returns the number enqueued; on a full
/// queue the rest are not enqueued and the error says how many were refused.
pub fn enqueue(
    producer: &KafkaProducer,
    topic: &str,
    key: Option<&str>,
    environment: &str,
    payloads: &[String],
) -> Result<(), (usize, KafkaError)> {
    let counters = &producer.context().counters;
    let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
        key: crate::message::ENVIRONMENT_HEADER,
        value: Some(environment),
    });
    for (i, payload) in payloads.iter().enumerate() {
        let mut record = BaseRecord::to(topic)
            .payload(payload.as_str())
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        // Count before sending: the delivery report may arrive on the polling thread
        // before `send` returns here.
        counters.accepted.fetch_add(1, Ordering::AcqRel);
        if let Err((error, _record)) = producer.send(record) {
            counters.accepted.fetch_sub(1, Ordering::AcqRel);
            return Err((payloads.len() - i, error));
        }
    }
    Ok(())
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
