//! Conversations: the event log of each conversation, read through a cache, written under the
//! lock store's per-conversation lock, persisted by the tracker store, then published.
//!
//! Invariants:
//! - O(1) work per new event: writes append only the new events; reads fetch only the events
//!   the cache has not seen (the store's length is the version, its epoch detects rewrites).
//! - Publish after persist: events reach the broker only after the store accepted them, in
//!   order per conversation (publishing happens while the conversation's lock is held).
//! - Reading never writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::engine::{Event, EventError, EventTexts};
use crate::plugins::{BrokerHandle, LockStoreHandle, PluginCallError, TrackerStoreHandle};
use crate::slot_cache::SlotCache;

#[derive(Debug, Error)]
pub enum ConversationError {
    #[error("{0}")]
    Store(PluginCallError),
    #[error("could not lock the conversation: {0}")]
    Lock(PluginCallError),
    #[error("The conversation would hold {total} events, more than the limit of {limit} (--max-events-per-conversation); nothing was stored.")]
    TooManyEvents { total: usize, limit: usize },
    #[error("a stored event of conversation '{id}' is invalid: {source}")]
    Corrupt { id: String, source: EventError },
}

/// A conversation's events as last seen.
#[derive(Clone)]
pub struct Log {
    pub epoch: u64,
    pub events: Arc<Vec<Event>>,
    /// The JSON text of each of `events` (same length), for answering trackers by copying.
    pub texts: Arc<EventTexts>,
}

impl Log {
    pub fn empty() -> Log {
        Log {
            epoch: 0,
            events: Arc::new(Vec::new()),
            texts: Arc::new(EventTexts::default()),
        }
    }

    /// A log of `events`, their texts serialised here.
    fn of(epoch: u64, events: Vec<Event>) -> Log {
        Log {
            epoch,
            texts: Arc::new(EventTexts::of(&events)),
            events: Arc::new(events),
        }
    }
}

/// What a write does to the log.
pub enum Write {
    Append(Vec<Event>),
    Replace(Vec<Event>),
}

/// Counters shown by `/status`.
#[derive(Default)]
pub struct Counters {
    pub events_stored: AtomicU64,
    pub events_published: AtomicU64,
    pub publish_failures: AtomicU64,
}

pub struct Conversations {
    store: TrackerStoreHandle,
    locks: Arc<LockStoreHandle>,
    broker: Option<BrokerHandle>,
    cache: SlotCache<Log>,
    /// `None`: the lock store's own default (its `lifetime` config, else 60 s).
    pub lock_lifetime: Option<Duration>,
    pub lock_wait: Duration,
    pub counters: Counters,
    /// Writes that would take a conversation beyond this many events are refused.
    pub max_events: usize,
    /// The store is written by this process only (`StoreCapabilities::sole_writer`): a cached
    /// log is current, so reading it needs no store call. Every write goes through
    /// [`Self::append_owned`], [`Self::append_turn`] or [`Self::replace_locked`], which
    /// keep the cache in step or drop the entry.
    pub sole_writer: bool,
    /// Writes begun so far (see [`Self::remember_read`]).
    writes_begun: AtomicU64,
}

impl Conversations {
    pub fn new(
        store: TrackerStoreHandle,
        locks: LockStoreHandle,
        broker: Option<BrokerHandle>,
        cache_size: usize,
    ) -> Conversations {
        Conversations {
            store,
            locks: Arc::new(locks),
            broker,
            cache: SlotCache::new(cache_size),
            lock_lifetime: lock_lifetime_from_env(),
            lock_wait: Duration::from_secs(60),
            counters: Counters::default(),
            max_events: usize::MAX,
            sole_writer: false,
            writes_begun: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &TrackerStoreHandle {
        &self.store
    }
    pub fn locks(&self) -> &LockStoreHandle {
        &self.locks
    }
    pub fn broker(&self) -> Option<&BrokerHandle> {
        self.broker.as_ref()
    }

    fn cached(&self, id: &str) -> Option<Log> {
        self.cache.with(id, Log::clone)
    }

    fn remember(&self, id: &str, log: Log) {
        self.cache.put(id, log);
    }

    /// Caches a log read from the store, which began when [`Self::writes_begun`] was
    /// `writes_before`. For a sole-writer store the cache is trusted without asking the store,
    /// so a read that may have loaded before a concurrent write landed (a write began since)
    /// caches nothing: the writer caches its own, newer log.
    fn remember_read(&self, id: &str, log: Log, writes_before: u64) {
        self.cache.put_if(id, log, || {
            !self.sole_writer || self.writes_begun.load(Ordering::SeqCst) == writes_before
        });
    }

    /// Called by every write before its store call: counts it, then drops the cached log.
    fn begin_write(&self, id: &str) {
        self.writes_begun.fetch_add(1, Ordering::SeqCst);
        self.forget(id);
    }

    fn forget(&self, id: &str) {
        self.cache.take(id);
    }

    /// The conversation's events, `None` if it was never stored. One store round trip, which
    /// brings only the events not yet cached (none for a cached conversation of a store that
    /// is its sole writer).
    pub async fn read(&self, id: &str) -> Result<Option<Log>, ConversationError> {
        let writes_before = self.writes_begun.load(Ordering::SeqCst);
        let cached = self.cached(id);
        if self.sole_writer {
            if let Some(log) = cached {
                return Ok(Some(log));
            }
        }
        let from = cached.as_ref().map(|c| c.events.len() as u64).unwrap_or(0);
        let Some(slice) = self
            .store
            .load(id, from)
            .await
            .map_err(ConversationError::Store)?
        else {
            self.forget(id);
            return Ok(None);
        };
        let parse =
            |events: &[abi_stable::std_types::RString]| -> Result<Vec<Event>, ConversationError> {
                let mut out = Vec::with_capacity(events.len());
                for text in events {
                    let value: serde_json::Value =
                        serde_json::from_str(text).map_err(|e| ConversationError::Corrupt {
                            id: id.into(),
                            source: EventError(format!("not JSON: {e}")),
                        })?;
                    if let Some(ev) =
                        Event::from_json(&value).map_err(|source| ConversationError::Corrupt {
                            id: id.into(),
                            source,
                        })?
                    {
                        out.push(ev);
                    }
                }
                Ok(out)
            };
        let log = match cached {
            Some(c) if c.epoch == slice.epoch && slice.length >= from => {
                if slice.events.is_empty() {
                    c
                } else {
                    let new = parse(&slice.events)?;
                    let mut events = Vec::with_capacity(slice.length as usize);
                    events.extend(c.events.iter().cloned());
                    let mut texts = c.texts.as_ref().clone();
                    for e in &new {
                        texts.push(&e.to_json_string());
                    }
                    events.extend(new);
                    Log {
                        epoch: slice.epoch,
                        events: Arc::new(events),
                        texts: Arc::new(texts),
                    }
                }
            }
            Some(_) => {
                // Rewritten elsewhere (replace/delete): read it whole.
                let full = self
                    .store
                    .load(id, 0)
                    .await
                    .map_err(ConversationError::Store)?;
                match full {
                    Some(full) => Log::of(full.epoch, parse(&full.events)?),
                    None => {
                        self.forget(id);
                        return Ok(None);
                    }
                }
            }
            // Serialised again rather than kept as stored: another writer (Rasa) may have
            // formatted them differently, and trackers are answered in one format.
            None => Log::of(slice.epoch, parse(&slice.events)?),
        };
        self.remember_read(id, log.clone(), writes_before);
        Ok(Some(log))
    }

    /// Drops the cached log of `id` so that the caller's copy is the only reference (it is
    /// about to extend it in place; see [`Self::append_turn`], which caches the result).
    pub fn detach(&self, id: &str) {
        self.forget(id);
    }

    /// Stores `events[stored..]` — the new events of a turn that started from the log at
    /// `epoch` with `stored` events, whose texts are `stored_texts` — and caches `events` as
    /// the new log, without copying.
    pub async fn append_turn(
        &self,
        id: &str,
        epoch: u64,
        stored: usize,
        events: Vec<Event>,
        stored_texts: EventTexts,
    ) -> Result<Log, ConversationError> {
        let mut all_texts = if stored_texts.len() == stored {
            stored_texts
        } else {
            EventTexts::of(&events[..stored.min(events.len())])
        };
        if events.len() == stored {
            let log = Log {
                epoch,
                events: Arc::new(events),
                texts: Arc::new(all_texts),
            };
            self.remember(id, log.clone());
            return Ok(log);
        }
        self.check_size(events.len())?;
        let texts: Vec<String> = events[stored..].iter().map(Event::to_json_string).collect();
        for t in &texts {
            all_texts.push(t);
        }
        let published = self.broker.is_some().then(|| texts.clone());
        let count = texts.len() as u64;
        self.begin_write(id);
        let pos = self
            .store
            .append(id, texts)
            .await
            .map_err(ConversationError::Store)?;
        let log = Log {
            epoch: pos.epoch,
            events: Arc::new(events),
            texts: Arc::new(all_texts),
        };
        if pos.epoch == epoch && pos.length == log.events.len() as u64 {
            self.remember(id, log.clone());
        } else {
            // Written elsewhere meanwhile (or a brand-new conversation's first epoch): re-read next time.
            self.forget(id);
        }
        self.counters
            .events_stored
            .fetch_add(count, Ordering::Relaxed);
        if let Some(texts) = published {
            self.publish(id, texts).await;
        }
        Ok(log)
    }

    /// Runs `decide` on the current log under the conversation's lock, persists what it
    /// returns, publishes it, and returns the new log with `decide`'s extra output.
    pub async fn modify<T>(
        &self,
        id: &str,
        decide: impl FnOnce(Option<&Log>) -> Result<(Option<Write>, T), crate::http::ApiError>,
    ) -> Result<(Log, T), crate::http::ApiError> {
        self.locked(id, || async {
            let current = self.read(id).await?;
            let (write, extra) = decide(current.as_ref())?;
            let old = current.unwrap_or_else(Log::empty);
            let log = match write {
                None => old,
                Some(Write::Append(new)) => self.append_owned(id, old, new).await?,
                Some(Write::Replace(events)) => self.replace_locked(id, &old, events).await?,
            };
            Ok((log, extra))
        })
        .await
    }

    /// Runs `work` while holding the conversation's lock (always released afterwards).
    pub async fn locked<T, Fut>(
        &self,
        id: &str,
        work: impl FnOnce() -> Fut,
    ) -> Result<T, crate::http::ApiError>
    where
        Fut: std::future::Future<Output = Result<T, crate::http::ApiError>>,
    {
        let lifetime = self.lock_lifetime.unwrap_or(Duration::ZERO);
        let ticket = self
            .locks
            .acquire(id, lifetime, self.lock_wait)
            .await
            .map_err(ConversationError::Lock)?;
        let outcome = work().await;
        if let Err(e) = self.locks.release(id, ticket.clone()).await {
            // Keep trying in the background (the store may be back in a moment) rather than
            // leave the conversation stalled until the lease runs out.
            tracing::warn!(
                conversation = id,
                "lock release failed, retrying in the background: {e}"
            );
            let (locks, id) = (self.locks.clone(), id.to_string());
            tokio::spawn(async move {
                for attempt in 1..=60u32 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if locks.release(&id, ticket.clone()).await.is_ok() {
                        tracing::info!(conversation = %id, attempt, "lock released after retrying");
                        return;
                    }
                }
            });
        }
        outcome
    }

    /// Appends `new` after `old` (the caller holds the lock and read `old`), then publishes.
    /// Copies `old`'s events (the caller keeps its reference); [`Self::append_owned`] does not.
    pub async fn append_locked(
        &self,
        id: &str,
        old: &Log,
        new: Vec<Event>,
    ) -> Result<Log, ConversationError> {
        self.append_owned(id, old.clone(), new).await
    }

    /// [`Self::append_locked`] taking `old` by value: when nobody else holds `old`'s events
    /// (the cache's reference is dropped first), the new events are pushed in place instead of
    /// copying the whole log — O(new events), not O(log), per append.
    pub async fn append_owned(
        &self,
        id: &str,
        old: Log,
        new: Vec<Event>,
    ) -> Result<Log, ConversationError> {
        if new.is_empty() {
            return Ok(old);
        }
        self.check_size(old.events.len().saturating_add(new.len()))?;
        let texts: Vec<String> = new.iter().map(Event::to_json_string).collect();
        // The store takes the texts; the broker (if any) gets its own copy, the log a third
        // (appended to one buffer, not one allocation per event).
        let published = self.broker.is_some().then(|| texts.clone());
        // Drop the cache's reference so that `old`'s vectors are usually ours alone; a
        // concurrent reader may still hold them, then `make_mut` copies (the cache is re-filled
        // below). Should the store fail, the cache is merely cold.
        self.begin_write(id);
        let mut all_texts = old.texts;
        {
            let t = Arc::make_mut(&mut all_texts);
            for text in &texts {
                t.push(text);
            }
        }
        let count = texts.len();
        let pos = self
            .store
            .append(id, texts)
            .await
            .map_err(ConversationError::Store)?;
        let (old_epoch, old_len) = (old.epoch, old.events.len());
        let mut events = old.events;
        Arc::make_mut(&mut events).extend(new);
        let log = Log {
            epoch: pos.epoch,
            events,
            texts: all_texts,
        };
        if pos.epoch == old_epoch && pos.length == (old_len + count) as u64 {
            self.remember(id, log.clone());
        } else {
            // Someone wrote without holding the lock: do not trust the cache.
            self.forget(id);
        }
        self.counters
            .events_stored
            .fetch_add(count as u64, Ordering::Relaxed);
        if let Some(texts) = published {
            self.publish(id, texts).await;
        }
        Ok(log)
    }

    async fn replace_locked(
        &self,
        id: &str,
        old: &Log,
        events: Vec<Event>,
    ) -> Result<Log, ConversationError> {
        self.check_size(events.len())?;
        let texts: Vec<String> = events.iter().map(Event::to_json_string).collect();
        self.begin_write(id);
        let pos = self
            .store
            .replace(id, texts.clone())
            .await
            .map_err(ConversationError::Store)?;
        let mut all_texts = EventTexts::default();
        for t in &texts {
            all_texts.push(t);
        }
        let log = Log {
            epoch: pos.epoch,
            events: Arc::new(events),
            texts: Arc::new(all_texts),
        };
        self.remember(id, log.clone());
        self.counters
            .events_stored
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        // Brokers get what a count-offset diff gives Rasa's: only a longer tail.
        let tail: Vec<String> = texts.into_iter().skip(old.events.len()).collect();
        self.publish(id, tail).await;
        Ok(log)
    }

    fn check_size(&self, total: usize) -> Result<(), ConversationError> {
        if total > self.max_events {
            return Err(ConversationError::TooManyEvents {
                total,
                limit: self.max_events,
            });
        }
        Ok(())
    }

    async fn publish(&self, id: &str, events: Vec<String>) {
        let Some(broker) = &self.broker else { return };
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        match broker.publish(id, events).await {
            Ok(()) => {
                self.counters
                    .events_published
                    .fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                // The events are stored; the broker refused them. Counted and logged, never silent.
                self.counters
                    .publish_failures
                    .fetch_add(n, Ordering::Relaxed);
                tracing::error!(
                    conversation = id,
                    events = n,
                    "events stored but not published: {e}"
                );
            }
        }
    }

    pub async fn keys(&self) -> Result<Vec<String>, ConversationError> {
        self.store.keys().await.map_err(ConversationError::Store)
    }

    /// Flushes the broker and closes every component (shutdown).
    pub async fn close(&self, flush_deadline: Duration) {
        if let Some(b) = &self.broker {
            if let Err(e) = b.flush(flush_deadline).await {
                tracing::error!("event broker flush at shutdown: {e}");
            }
            let _ = b.close().await;
        }
        let _ = self.store.close().await;
        let _ = self.locks.close().await;
    }
}

/// `TICKET_LOCK_LIFETIME` (seconds), as in Rasa; when unset the lock store decides.
fn lock_lifetime_from_env() -> Option<Duration> {
    std::env::var("TICKET_LOCK_LIFETIME")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(Duration::from_secs_f64)
}
