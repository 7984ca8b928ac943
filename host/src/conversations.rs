//! Conversations: the event log of each conversation, read through a cache, written under the
//! lock store's per-conversation lock, persisted by the tracker store, then published.
//!
//! Invariants:
//! - O(1) work per new event: writes append only the new events; reads fetch only the events
//!   the cache has not seen (the store's length is the version, its epoch detects rewrites).
//! - Publish after persist: events reach the broker only after the store accepted them, in
//!   order per conversation (publishing happens while the conversation's lock is held).
//! - Reading never writes.
//! - A cached log's `texts` always has one entry per event; the texts are the log. The cache
//!   keeps no parsed events (see [`Log`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::borrow::Cow;

use thiserror::Error;

use crate::engine::{Event, EventError, EventTexts};
use crate::plugins::{BrokerHandle, LockStoreHandle, PluginCallError, TrackerStoreHandle};
use crate::slot_cache::{Eviction, SlotCache};

#[derive(Debug, Error, Clone)]
pub enum ConversationError {
    #[error("{0}")]
    Store(PluginCallError),
    #[error("could not lock the conversation: {0}")]
    Lock(PluginCallError),
    #[error("The conversation would hold {total} events, more than the limit of {limit} (--max-events-per-conversation); nothing was stored.")]
    TooManyEvents { total: usize, limit: usize },
    #[error("a stored event of conversation '{id}' is invalid: {source}")]
    Corrupt { id: String, source: EventError },
    #[error("conversation '{id}' was rewritten or deleted while it was read; try again")]
    Changed { id: String },
}

/// A log's event texts: held by the host, or left in the tracker store when the store is
/// their sole writer and answers at once (`StoreCapabilities::immediate_reads`, the in-memory
/// store). Then the store's copy is the only one: a turn or an append, which needs the
/// texts only to add to them, copies nothing into the host (P1, P2 and P6 in
/// docs/benchmarks.md), and a request that reads them fetches them (a GET of the tracker, a
/// turn that looks back at stored events).
#[derive(Clone)]
pub enum LogTexts {
    Held(Arc<EventTexts>),
    InStore(Arc<InStore>),
}

/// Texts left in the store: which conversation, and which version of it.
pub struct InStore {
    store: Arc<TrackerStoreHandle>,
    id: Box<str>,
    epoch: u64,
    len: usize,
    /// The texts once fetched, kept with this log and its copies (the cache's among them:
    /// a conversation that is read again and again is fetched once per write).
    fetched: OnceLock<Arc<EventTexts>>,
}

impl InStore {
    /// The store's texts from index `from` on, of this version of the conversation: appends
    /// after it are fine (this version is a prefix), another epoch or a deletion is not.
    fn load_from(&self, from: usize) -> Result<colloquy_plugin_api::EventLog, ConversationError> {
        let log = self
            .store
            .load_at_once(&self.id, from as u64)
            .map_err(ConversationError::Store)?
            .ok_or_else(|| self.changed())?;
        if log.epoch != self.epoch || (log.length as usize) < self.len {
            return Err(self.changed());
        }
        Ok(log)
    }

    /// After a failed fetch: the texts if another copy of this log fetched them in the
    /// meantime, before the store moved on. Without this a request that found them unfetched,
    /// then lost the race to the store's rewrite, answered 503 although its version was at
    /// hand (and its retry, which checks whether the texts can be had, saw them fetched).
    fn fetched_meanwhile(&self) -> Option<&EventTexts> {
        self.fetched.get().map(|t| &**t)
    }

    fn changed(&self) -> ConversationError {
        ConversationError::Changed {
            id: self.id.to_string(),
        }
    }
}

impl LogTexts {
    fn in_store(store: &Arc<TrackerStoreHandle>, id: &str, epoch: u64, len: usize) -> LogTexts {
        LogTexts::in_store_fetched(store, id, epoch, len, OnceLock::new())
    }

    fn in_store_fetched(
        store: &Arc<TrackerStoreHandle>,
        id: &str,
        epoch: u64,
        len: usize,
        fetched: OnceLock<Arc<EventTexts>>,
    ) -> LogTexts {
        LogTexts::InStore(Arc::new(InStore {
            store: store.clone(),
            id: id.into(),
            epoch,
            len,
            fetched,
        }))
    }

    pub fn len(&self) -> usize {
        match self {
            LogTexts::Held(t) => t.len(),
            LogTexts::InStore(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, fetched from the store if they were left there (its first poll: the store
    /// answers at once). A store that lost the conversation or rewrote it since is
    /// [`ConversationError::Changed`].
    pub fn get(&self) -> Result<&EventTexts, ConversationError> {
        let s = match self {
            LogTexts::Held(t) => return Ok(t),
            LogTexts::InStore(s) => s,
        };
        if let Some(t) = s.fetched.get() {
            return Ok(t);
        }
        let log = match s.load_from(0) {
            Ok(log) => log,
            Err(e) => return s.fetched_meanwhile().ok_or(e),
        };
        // The host is the store's sole writer: these are the texts it wrote.
        let ours = log.events.get(..s.len).ok_or_else(|| s.changed())?;
        let texts = EventTexts::from_strs(ours.iter().map(|t| t.as_str()));
        Ok(s.fetched.get_or_init(|| Arc::new(texts)))
    }

    /// The text of event `i` (`i` < [`Self::len`]): fetching only the events from `i` on when
    /// the texts are in the store and were not fetched yet (a tracker's latest message is
    /// near the end).
    pub fn text_at(&self, i: usize) -> Result<Cow<'_, str>, ConversationError> {
        let s = match self {
            LogTexts::InStore(s) if s.fetched.get().is_none() && i < s.len => s,
            _ => return Ok(Cow::Borrowed(self.get()?.get(i))),
        };
        let log = match s.load_from(i) {
            Ok(log) => log,
            Err(e) => return Ok(Cow::Borrowed(s.fetched_meanwhile().ok_or(e)?.get(i))),
        };
        let text = log.events.first().ok_or_else(|| s.changed())?;
        Ok(Cow::Owned(text.to_string()))
    }

    /// These texts with `new` added, held: in place when they were held and not shared.
    fn pushed(self, new: &[String]) -> Result<LogTexts, ConversationError> {
        let mut held = match self {
            LogTexts::Held(held) => held,
            in_store => Arc::new(in_store.get()?.clone()),
        };
        let t = Arc::make_mut(&mut held);
        for text in new {
            t.push(text);
        }
        Ok(LogTexts::Held(held))
    }
}

/// A log's texts for a tracker answer: its parsed events are used before its texts are
/// fetched from the store.
impl crate::engine::tracker::TextSource for Log {
    fn count(&self) -> usize {
        self.len()
    }
    fn texts(&self) -> Result<&EventTexts, String> {
        self.texts.get().map_err(|e| e.to_string())
    }
    fn event(&self, i: usize) -> Result<Event, String> {
        match &self.parsed {
            Some(p) if p.from <= i && i < p.from + p.events.len() => {
                Ok(p.events[i - p.from].clone())
            }
            _ => {
                let text = self.texts.text_at(i).map_err(|e| e.to_string())?;
                crate::engine::texts::parse_text(i, &text).map_err(|e| e.0)
            }
        }
    }
}

/// A conversation's events as last seen: the JSON text of every event, and the events
/// parsed while they are useful.
///
/// The cache keeps texts only (a conversation costs ~150 bytes per event as text, several
/// times that parsed; P6 and P2 in docs/benchmarks.md). The events a request parsed or wrote
/// (a turn's, an append's, a replace's, a store read's) go with its own log, for its answer;
/// the next request works from the texts and the state remembered with them
/// (`http/state_cache.rs`), which needs only the events added since, and a turn parses stored
/// events only when it looks back at one (`dialogue::Turn`). Anything else is parsed from
/// the texts when a request needs it ([`Log::events_from`]).
#[derive(Clone)]
pub struct Log {
    pub epoch: u64,
    /// The JSON text of every event, in order.
    pub texts: LogTexts,
    parsed: Option<Parsed>,
}

/// Parsed events of a log: `events[k]` is event `from + k`, through the last one.
#[derive(Clone)]
struct Parsed {
    from: usize,
    events: Arc<Vec<Event>>,
}

impl Log {
    pub fn empty() -> Log {
        Log {
            epoch: 0,
            texts: LogTexts::Held(Arc::new(EventTexts::default())),
            parsed: None,
        }
    }

    /// A log of `events`, their texts serialised here (the parsed events are for its request).
    fn of(epoch: u64, events: Vec<Event>) -> Log {
        Log::with_texts(epoch, EventTexts::of(&events), events)
    }

    /// A log of `events` and their texts.
    fn with_texts(epoch: u64, texts: EventTexts, events: Vec<Event>) -> Log {
        Log {
            epoch,
            texts: LogTexts::Held(Arc::new(texts)),
            parsed: Some(Parsed {
                from: 0,
                events: Arc::new(events),
            }),
        }
    }

    /// How many events the conversation has.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// All the events (see [`Self::events_from`]).
    pub fn events(&self, id: &str) -> Result<Cow<'_, [Event]>, ConversationError> {
        self.events_from(id, 0)
    }

    /// The events from index `from` on: the parsed ones when the log has them, else parsed
    /// from the texts. `id` names the conversation in the error a damaged text gives.
    pub fn events_from(
        &self,
        id: &str,
        from: usize,
    ) -> Result<Cow<'_, [Event]>, ConversationError> {
        let len = self.len();
        match &self.parsed {
            _ if from >= len => Ok(Cow::Borrowed(&[])),
            Some(p) if p.from <= from => Ok(Cow::Borrowed(&p.events[from - p.from..])),
            _ => self
                .texts
                .get()?
                .parse(from..len)
                .map(Cow::Owned)
                .map_err(|source| ConversationError::Corrupt {
                    id: id.into(),
                    source,
                }),
        }
    }

    /// The texts, and all the events if this log has them parsed, for a turn to take over
    /// (the events are not copied when this log holds the only reference to them).
    pub fn into_parts(self) -> (Option<Vec<Event>>, LogTexts) {
        let events = match self.parsed {
            Some(p) if p.from == 0 => {
                Some(Arc::try_unwrap(p.events).unwrap_or_else(|shared| shared.as_ref().clone()))
            }
            _ => None,
        };
        (events, self.texts)
    }

    /// Whether this log has all its events parsed (for its own request; the cache never
    /// keeps them, see [`Log`]).
    #[cfg(test)]
    fn has_parsed_events(&self) -> bool {
        self.parsed.as_ref().is_some_and(|p| p.from == 0)
    }

    /// What the cache holds of this log: the texts (or where they are).
    fn for_cache(&self) -> Log {
        Log {
            epoch: self.epoch,
            texts: self.texts.clone(),
            parsed: None,
        }
    }

    /// This log's texts as texts left in `store`, with the ones held kept as fetched (what a
    /// store read caches when the store holds the texts).
    fn left_in(&self, store: &Arc<TrackerStoreHandle>, id: &str) -> Log {
        let texts = match &self.texts {
            LogTexts::InStore(_) => self.texts.clone(),
            LogTexts::Held(held) => LogTexts::in_store_fetched(
                store,
                id,
                self.epoch,
                held.len(),
                OnceLock::from(held.clone()),
            ),
        };
        Log {
            epoch: self.epoch,
            texts,
            parsed: None,
        }
    }
}

impl Eviction for Log {
    /// Texts (or none): a few chunks, freed at once.
    fn heavy(&self) -> bool {
        false
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
    store: Arc<TrackerStoreHandle>,
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
    /// The store is the sole-writer kind that also answers at once
    /// (`StoreCapabilities::immediate_reads`): logs leave their texts in it ([`LogTexts`]).
    pub texts_in_store: bool,
    /// Writes begun so far, and writes ended so far (see [`Self::remember_read`]).
    writes_begun: AtomicU64,
    writes_ended: AtomicU64,
}

/// Counts a write as ended when dropped: after it cached its log, failed or was cancelled.
struct WriteInFlight<'a>(&'a AtomicU64);

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Conversations {
    pub fn new(
        store: TrackerStoreHandle,
        locks: LockStoreHandle,
        broker: Option<BrokerHandle>,
        cache_size: usize,
    ) -> Conversations {
        Conversations {
            store: Arc::new(store),
            locks: Arc::new(locks),
            broker,
            cache: SlotCache::new(cache_size),
            lock_lifetime: lock_lifetime_from_env(),
            lock_wait: Duration::from_secs(60),
            counters: Counters::default(),
            max_events: usize::MAX,
            sole_writer: false,
            texts_in_store: false,
            writes_begun: AtomicU64::new(0),
            writes_ended: AtomicU64::new(0),
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

    /// Caches `log`'s texts (see [`Log`]).
    fn remember(&self, id: &str, log: &Log) {
        self.cache.put(id, log.for_cache());
    }

    /// What the cache keeps of a log read from the store: its texts, marked as the store's
    /// when the store holds them ([`LogTexts`]).
    fn cache_entry_of_read(&self, id: &str, log: &Log) -> Log {
        if self.texts_in_store {
            log.left_in(&self.store, id)
        } else {
            log.for_cache()
        }
    }

    /// `Some(writes begun)` when no write is in flight, else `None`. Ended is read first:
    /// if begun (read later, and never less than ended) equals it, every write begun by
    /// then had ended, so a store read that starts now sees all of them.
    fn quiet_point(&self) -> Option<u64> {
        let ended = self.writes_ended.load(Ordering::SeqCst);
        let begun = self.writes_begun.load(Ordering::SeqCst);
        (begun == ended).then_some(begun)
    }

    /// Caches a log read from the store, whose read began at `quiet` ([`Self::quiet_point`]).
    /// For a sole-writer store the cache is trusted without asking the store, so a read
    /// that may have missed a write caches nothing — one that began while a write was in
    /// flight, or since which a write began: the writer caches its own, newer log.
    fn remember_read(&self, id: &str, log: &Log, quiet: Option<u64>) {
        if !self.sole_writer {
            self.cache.put(id, log.for_cache());
            return;
        }
        let Some(writes_before) = quiet else { return };
        self.cache
            .put_if(id, self.cache_entry_of_read(id, log), || {
                self.writes_begun.load(Ordering::SeqCst) == writes_before
            });
    }

    /// Called by every write before its store call: counts it, then drops the cached log.
    /// The write counts as ended when the returned guard is dropped, which must be after
    /// the write cached its new log.
    #[must_use]
    fn begin_write(&self, id: &str) -> WriteInFlight<'_> {
        self.writes_begun.fetch_add(1, Ordering::SeqCst);
        self.forget(id);
        WriteInFlight(&self.writes_ended)
    }

    fn forget(&self, id: &str) {
        self.cache.take(id);
    }

    /// The conversation's events, `None` if it was never stored. One store round trip, which
    /// brings only the events not yet cached (none for a cached conversation of a store that
    /// is its sole writer).
    pub async fn read(&self, id: &str) -> Result<Option<Log>, ConversationError> {
        let quiet = self.quiet_point();
        let cached = self.cached(id);
        if self.sole_writer {
            if let Some(log) = cached {
                return Ok(Some(log));
            }
        }
        let from = cached.as_ref().map(|c| c.len() as u64).unwrap_or(0);
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
                    // A legacy `topic` event is dropped, as Rasa does.
                    if let Some(ev) = Event::from_json_text(text).map_err(|source| {
                        ConversationError::Corrupt {
                            id: id.into(),
                            source,
                        }
                    })? {
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
                    let mut texts = c.texts.get()?.clone();
                    for e in &new {
                        texts.push(&e.to_json_string());
                    }
                    // The new events are handed to this request only.
                    let parsed = Parsed {
                        from: c.texts.len(),
                        events: Arc::new(new),
                    };
                    Log {
                        epoch: slice.epoch,
                        texts: LogTexts::Held(Arc::new(texts)),
                        parsed: Some(parsed),
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
                    Some(full) => self.log_read(full.epoch, &full.events, parse(&full.events)?),
                    None => {
                        self.forget(id);
                        return Ok(None);
                    }
                }
            }
            None => self.log_read(slice.epoch, &slice.events, parse(&slice.events)?),
        };
        self.remember_read(id, &log, quiet);
        Ok(Some(log))
    }

    /// A whole log read from the store, `events` parsed from its `texts`. The texts are
    /// serialised again rather than kept as stored: another writer (Rasa) may have formatted
    /// them differently, and trackers are answered in one format. A sole-writer store holds
    /// only texts this host wrote in that format, so they are kept as they are (serialising a
    /// conversation again was a tenth of a turn whose conversation had to be read).
    fn log_read(
        &self,
        epoch: u64,
        texts: &[abi_stable::std_types::RString],
        events: Vec<Event>,
    ) -> Log {
        // A dropped legacy `topic` event would misalign texts and events.
        if self.sole_writer && texts.len() == events.len() {
            let texts = EventTexts::from_strs(texts.iter().map(|t| t.as_str()));
            Log::with_texts(epoch, texts, events)
        } else {
            Log::of(epoch, events)
        }
    }

    /// [`Self::read`], the texts at hand (fetched if the store keeps them). A request that
    /// does not hold the conversation's lock may see it rewritten between the read and the
    /// fetch: it reads again (the writer cached its own log), and the third time under the
    /// lock, which no write holds then, so a reader always gets an answer.
    pub async fn read_with_texts(&self, id: &str) -> Result<Option<Log>, crate::http::ApiError> {
        for _ in 0..2 {
            match self.read_and_fetch(id).await {
                Err(ConversationError::Changed { .. }) => continue,
                other => return Ok(other?),
            }
        }
        self.locked(id, || async { Ok(self.read_and_fetch(id).await?) })
            .await
    }

    async fn read_and_fetch(&self, id: &str) -> Result<Option<Log>, ConversationError> {
        let log = self.read(id).await?;
        if let Some(l) = &log {
            if let Err(e) = l.texts.get() {
                // The cached version is gone from the store: the next read asks the store.
                self.forget(id);
                return Err(e);
            }
        }
        Ok(log)
    }

    /// Drops the cached log of `id` so that the caller's copy is the only reference (it is
    /// about to extend it in place; see [`Self::append_turn`], which caches the result).
    pub fn detach(&self, id: &str) {
        self.forget(id);
    }

    /// Stores the new events of a turn that started from the log at `epoch` with `stored`
    /// events, whose texts are `stored_texts`: `events` are the conversation's events from
    /// index `first` (at most `stored`) on. Caches the new log as texts; the returned log
    /// has `events` parsed, for its request (see [`Log`]).
    pub async fn append_turn(
        &self,
        id: &str,
        epoch: u64,
        stored: usize,
        events: Vec<Event>,
        first: usize,
        stored_texts: LogTexts,
    ) -> Result<Log, ConversationError> {
        debug_assert!(first <= stored && stored_texts.len() == stored);
        let parsed = |events: Vec<Event>| {
            Some(Parsed {
                from: first,
                events: Arc::new(events),
            })
        };
        let total = first + events.len();
        if total == stored {
            let log = Log {
                epoch,
                texts: stored_texts,
                parsed: parsed(events),
            };
            self.remember(id, &log);
            return Ok(log);
        }
        if let Err(e) = self.check_size(total) {
            // Nothing is stored: the log the turn started from goes back to the cache (the
            // turn detached it), so that the next request does not read it again.
            self.remember(
                id,
                &Log {
                    epoch,
                    texts: stored_texts,
                    parsed: None,
                },
            );
            return Err(e);
        }
        let texts: Vec<String> = events[stored - first..]
            .iter()
            .map(Event::to_json_string)
            .collect();
        let held = self.held_after_write(stored_texts, &texts)?;
        let published = self.broker.is_some().then(|| texts.clone());
        let count = texts.len() as u64;
        let writing = self.begin_write(id);
        let pos = self
            .store
            .append(id, texts)
            .await
            .map_err(ConversationError::Store)?;
        let log = Log {
            epoch: pos.epoch,
            texts: held.unwrap_or_else(|| LogTexts::in_store(&self.store, id, pos.epoch, total)),
            parsed: parsed(events),
        };
        if pos.epoch == epoch && pos.length == log.len() as u64 {
            self.remember(id, &log);
        } else {
            // Written elsewhere meanwhile (or a brand-new conversation's first epoch): re-read next time.
            self.forget(id);
        }
        drop(writing);
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

    /// [`Self::append_locked`] taking `old` by value: when nobody else holds `old`'s texts
    /// (the cache's reference is dropped first), the new ones are pushed in place instead of
    /// copying the whole log — O(new events), not O(log), per append. Kept parsed events are
    /// extended the same way; otherwise the returned log carries the new events parsed, for
    /// this request only (see [`Log`]).
    pub async fn append_owned(
        &self,
        id: &str,
        old: Log,
        new: Vec<Event>,
    ) -> Result<Log, ConversationError> {
        if new.is_empty() {
            return Ok(old);
        }
        self.check_size(old.len().saturating_add(new.len()))?;
        let texts: Vec<String> = new.iter().map(Event::to_json_string).collect();
        // The store takes the texts; the broker (if any) gets its own copy, the log a third
        // (appended to one buffer, not one allocation per event).
        let published = self.broker.is_some().then(|| texts.clone());
        // Drop the cache's reference so that `old`'s vectors are usually ours alone; a
        // concurrent reader may still hold them, then `make_mut` copies (the cache is re-filled
        // below). Should the store fail, the cache is merely cold.
        let writing = self.begin_write(id);
        let (old_epoch, old_len) = (old.epoch, old.len());
        let held = if old_len == 0 && !self.texts_in_store {
            // A new conversation's texts, in a buffer of their size.
            Some(LogTexts::Held(Arc::new(EventTexts::from_texts(&texts))))
        } else {
            self.held_after_write(old.texts, &texts)?
        };
        let count = texts.len();
        let pos = self
            .store
            .append(id, texts)
            .await
            .map_err(ConversationError::Store)?;
        let parsed = Parsed {
            from: old_len,
            events: Arc::new(new),
        };
        let log = Log {
            epoch: pos.epoch,
            texts: held
                .unwrap_or_else(|| LogTexts::in_store(&self.store, id, pos.epoch, old_len + count)),
            parsed: Some(parsed),
        };
        if pos.epoch == old_epoch && pos.length == (old_len + count) as u64 {
            self.remember(id, &log);
        } else {
            // Someone wrote without holding the lock: do not trust the cache.
            self.forget(id);
        }
        drop(writing);
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
        let writing = self.begin_write(id);
        let pos = self
            .store
            .replace(id, texts.clone())
            .await
            .map_err(ConversationError::Store)?;
        let all_texts = if self.texts_in_store {
            LogTexts::in_store(&self.store, id, pos.epoch, texts.len())
        } else {
            LogTexts::Held(Arc::new(EventTexts::from_texts(&texts)))
        };
        // The parsed events serve this request's tracker only (see [`Log`]).
        let log = Log {
            epoch: pos.epoch,
            texts: all_texts,
            parsed: Some(Parsed {
                from: 0,
                events: Arc::new(events),
            }),
        };
        self.remember(id, &log);
        drop(writing);
        self.counters
            .events_stored
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        // Brokers get what a count-offset diff gives Rasa's: only a longer tail.
        let tail: Vec<String> = texts.into_iter().skip(old.len()).collect();
        self.publish(id, tail).await;
        Ok(log)
    }

    /// The texts of a log after a write of `new` after `old`, when the host holds them
    /// (`None` when they are left in the store: they are named once the store says at which
    /// epoch it wrote them).
    fn held_after_write(
        &self,
        old: LogTexts,
        new: &[String],
    ) -> Result<Option<LogTexts>, ConversationError> {
        if self.texts_in_store {
            return Ok(None);
        }
        old.pushed(new).map(Some)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::{ConversationError, Log, Write};
    use crate::dialogue::UserMessage;
    use crate::engine::tracker::TextTrackerView;
    use crate::engine::{Event, EventTexts, EventVerbosity};
    use crate::http::AppState;

    /// A served hello-bot (in-memory stores), trained into `dir`.
    fn hello_bot(dir: &std::path::Path) -> Arc<AppState> {
        hello_bot_holding(dir, 0)
    }

    /// [`hello_bot`] whose conversations hold at most `max_events` (0: the default).
    fn hello_bot_holding(dir: &std::path::Path, max_events: u64) -> Arc<AppState> {
        let bot = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello-bot");
        let opts = crate::training::TrainOptions {
            domain: format!("{bot}/domain.yml").into(),
            data: vec![format!("{bot}/data").into()],
            config: format!("{bot}/config.yml").into(),
            out: dir.into(),
            fixed_model_name: Some("hello".into()),
            force: true,
        };
        let model = crate::training::train(&opts, &mut |_| {}).unwrap().path;
        let run = crate::cli::RunArgs {
            model: Some(model),
            cache_conversations: 100,
            max_events_per_conversation: max_events,
            ..Default::default()
        };
        let endpoints = crate::config::Endpoints::default();
        tokio::task::block_in_place(|| crate::server::build_state(&run, &endpoints))
            .unwrap()
            .0
    }

    /// [`hello_bot`] in a temporary directory (kept alive by the caller), with its agent.
    fn served_hello_bot() -> (tempfile::TempDir, Arc<AppState>, Arc<crate::agent::Agent>) {
        let dir = tempfile::tempdir().unwrap();
        let app = hello_bot(dir.path());
        let agent = app.agent().unwrap();
        (dir, app, agent)
    }

    fn message(sender: &str, text: &str) -> UserMessage {
        UserMessage {
            sender_id: sender.into(),
            text: Some(text.into()),
            input_channel: Some("rest".into()),
            message_id: Some("m".into()),
            ..Default::default()
        }
    }

    /// The tracker of `id` as `tracker_of` answers it, with the sender id and the times
    /// written as `T` (the two conversations differ in those only).
    fn tracker(app: &AppState, id: &str, log: &Log) -> String {
        let domain = app.domain();
        let warm = app.states.take_for_log(id, &domain, log).unwrap();
        let body = TextTrackerView {
            sender_id: id,
            texts: log,
            state: &warm.state,
            verbosity: EventVerbosity::All,
        }
        .to_json_bytes()
        .unwrap();
        app.states.put(id, log.epoch, &domain, warm);
        let body = String::from_utf8(body).unwrap();
        let times = regex::Regex::new(r#""(timestamp|latest_event_time)":[0-9.e+]+"#).unwrap();
        times
            .replace_all(&body.replace(id, "ID"), "\"$1\":T")
            .into_owned()
    }

    /// The events as written, without their times.
    fn without_times(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                Event {
                    timestamp: 0.0,
                    ..e.clone()
                }
                .to_json_string()
            })
            .collect()
    }

    /// A turn refused for the conversation's size stores nothing and leaves the conversation
    /// as it was: its texts stay cached and its remembered state is the one from before the
    /// turn. Dropping them made every later turn of a conversation at its limit rebuild the
    /// state from all its stored events (~0.4 s a turn at the default limit of 100,000; a few
    /// such conversations under load stalled the server).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_turn_refused_for_the_conversations_size_leaves_it_warm() {
        let dir = tempfile::tempdir().unwrap();
        // The first turn stores the session start and one exchange (8 events); a second
        // would make 13.
        let app = hello_bot_holding(dir.path(), 12);
        let agent = app.agent().unwrap();
        let conv = &app.conversations;
        app.processor
            .handle_message(&app, agent.clone(), message("full", "hello"))
            .await
            .unwrap();
        let before = conv.read("full").await.unwrap().unwrap();
        let (stored, epoch) = (before.len(), before.epoch);
        assert!(
            stored <= 12 && stored + 5 > 12,
            "{stored} events after one turn"
        );
        let answer = tracker(&app, "full", &before);
        for _ in 0..2 {
            let refused = app
                .processor
                .handle_message(&app, agent.clone(), message("full", "hello"))
                .await
                .err()
                .expect("the second turn exceeds the limit");
            assert_eq!(refused.status, 400, "{refused:?}");
            assert!(
                refused.message.contains("--max-events-per-conversation"),
                "{refused:?}"
            );
            let cached = conv.cached("full").expect("the log is still cached");
            assert_eq!((cached.len(), cached.epoch), (stored, epoch));
            assert_eq!(
                app.states.seen("full", epoch),
                Some(stored),
                "the state from before the turn is remembered"
            );
        }
        let after = conv.read("full").await.unwrap().unwrap();
        assert_eq!(tracker(&app, "full", &after), answer);
    }

    /// A conversation of turns (cached as texts, with its state and featurisation warm) answers the same trackers and next turns as the same events written
    /// through the API (texts, with a cold state).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_conversation_of_turns_answers_as_its_events_written_through_the_api() {
        let (_dir, app, agent) = served_hello_bot();
        let conv = &app.conversations;
        for text in ["hello", "I would like a coffee", "thanks"] {
            app.processor
                .handle_message(&app, agent.clone(), message("turns", text))
                .await
                .unwrap();
        }
        let turns = conv.read("turns").await.unwrap().unwrap();
        assert!(
            !turns.has_parsed_events(),
            "the cache keeps a turn's texts only"
        );
        // The same events written through the API: the cache keeps their texts only.
        let events = turns.events("turns").unwrap().into_owned();
        let (written, ()) = conv
            .modify("texts", |_| Ok((Some(Write::Replace(events.clone())), ())))
            .await
            .unwrap();
        assert!(written.parsed.is_some(), "the writer's request has them");
        let texts = conv.read("texts").await.unwrap().unwrap();
        assert!(texts.parsed.is_none(), "the cache has the texts only");
        assert_eq!(texts.texts.get().unwrap(), turns.texts.get().unwrap());
        // Parsed back, a user event's parse data may differ in key order and in the keys 3.6
        // writes into it (as for any log read from a store); what the events say does not.
        assert_eq!(
            EventTexts::of(&texts.events("texts").unwrap()),
            EventTexts::of(&turns.events("turns").unwrap())
        );
        // A cold state (the state cache has none for `texts`), then a warm one.
        assert_eq!(
            tracker(&app, "texts", &texts),
            tracker(&app, "turns", &turns)
        );
        // An API append to each: both stay texts only and answer alike.
        let bot = Event::list_from_json(&[json!({"event": "bot", "text": "hi", "timestamp": 1.0})])
            .unwrap();
        for id in ["turns", "texts"] {
            let (log, ()) = conv
                .modify(id, |_| Ok((Some(Write::Append(bot.clone())), ())))
                .await
                .unwrap();
            let cached = conv.read(id).await.unwrap().unwrap();
            assert!(!cached.has_parsed_events(), "{id}");
            assert_eq!(log.len(), cached.len());
        }
        let (turns, texts) = (
            conv.read("turns").await.unwrap().unwrap(),
            conv.read("texts").await.unwrap().unwrap(),
        );
        assert_eq!(
            tracker(&app, "texts", &texts),
            tracker(&app, "turns", &turns)
        );
        // The next turn of each: the same new events and messages.
        let mut outputs = Vec::new();
        for id in ["turns", "texts"] {
            let out = app
                .processor
                .handle_message(&app, agent.clone(), message(id, "hello"))
                .await
                .unwrap();
            let new = without_times(&out.log.events_from(id, turns.len()).unwrap());
            outputs.push((
                new,
                serde_json::to_string(&out.messages)
                    .unwrap()
                    .replace(id, "ID"),
            ));
        }
        assert_eq!(outputs[0], outputs[1]);
        assert!(!outputs[0].0.is_empty());
        let (turns, texts) = (
            conv.read("turns").await.unwrap().unwrap(),
            conv.read("texts").await.unwrap().unwrap(),
        );
        assert_eq!(
            tracker(&app, "texts", &texts),
            tracker(&app, "turns", &turns)
        );
    }

    /// A warm turn works from the remembered state and featurisation and from
    /// its own events: it does not parse the stored events (damaged ones do not stop it). A
    /// turn that has to look back at them (`/back` rewinds) parses them, and with damaged
    /// ones fails with the typed error and stores nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_warm_turn_does_not_parse_the_stored_events() {
        let (_dir, app, agent) = served_hello_bot();
        let conv = &app.conversations;
        let turn = |text: &'static str| {
            let (app, agent) = (app.clone(), agent.clone());
            async move {
                app.processor
                    .handle_message(&app, agent, message("w", text))
                    .await
            }
        };
        for _ in 0..3 {
            turn("hello").await.unwrap();
        }
        let damage = || {
            let log = conv.cached("w").expect("cached");
            let mut texts = EventTexts::default();
            for _ in 0..log.len() {
                texts.push("{\"event\":");
            }
            conv.cache.put(
                "w",
                Log {
                    epoch: log.epoch,
                    texts: super::LogTexts::Held(Arc::new(texts)),
                    parsed: None,
                },
            );
            log.len()
        };
        let before = damage();
        let out = turn("hello")
            .await
            .expect("a warm turn never reads the stored events");
        assert!(!out.messages.is_empty());
        assert!(out.log.len() > before);

        let before = damage();
        match turn("/back").await {
            Err(e) => assert!(format!("{e:?}").contains("invalid"), "{e:?}"),
            Ok(_) => panic!("a turn that rewinds must read the damaged events"),
        }
        conv.forget("w");
        let stored = conv.read("w").await.unwrap().unwrap();
        assert_eq!(stored.len(), before, "nothing of the failed turn is stored");
        stored.events("w").expect("the store's events are intact");
    }

    /// Whether `log`'s texts are held by the host (or were fetched from the store by a read).
    fn texts_held(log: &Log) -> bool {
        match &log.texts {
            super::LogTexts::Held(_) => true,
            super::LogTexts::InStore(s) => s.fetched.get().is_some(),
        }
    }

    /// With the in-memory store, which is the sole writer and answers at once, the host keeps
    /// no copy of the texts that turns and appends write: a tracker fetches them from the
    /// store (once per write, the cache keeping what it fetched), and they are the store's.
    /// A store that lost the conversation behind the host's back gives the typed error.
    #[tokio::test(flavor = "multi_thread")]
    async fn texts_left_in_the_store_are_fetched_when_read() {
        let (_dir, app, agent) = served_hello_bot();
        let conv = &app.conversations;
        assert!(conv.texts_in_store, "the in-memory store keeps the texts");
        for text in ["hello", "I would like a coffee"] {
            app.processor
                .handle_message(&app, agent.clone(), message("s", text))
                .await
                .unwrap();
        }
        let bot = Event::list_from_json(&[json!({"event": "bot", "text": "hi", "timestamp": 1.0})])
            .unwrap();
        conv.modify("s", |_| Ok((Some(Write::Append(bot.clone())), ())))
            .await
            .unwrap();
        let log = conv.read("s").await.unwrap().unwrap();
        assert!(
            !texts_held(&log),
            "turns and appends leave the texts in the store"
        );
        // One event is fetched alone (a tracker's latest message), not the whole log.
        let last = log.texts.text_at(log.len() - 1).unwrap().into_owned();
        assert!(!texts_held(&log));
        assert!(last.starts_with(r#"{"event":"bot""#), "{last}");
        let first = log.texts.text_at(0).unwrap().into_owned();
        assert!(first.contains("action_session_start"), "{first}");

        let stored = conv.store().load("s", 0).await.unwrap().unwrap();
        let domain = app.domain();
        let warm = app.states.take_for_log("s", &domain, &log).unwrap();
        let body = TextTrackerView {
            sender_id: "s",
            texts: &log,
            state: &warm.state,
            verbosity: EventVerbosity::All,
        }
        .to_json_bytes()
        .unwrap();
        let listed: Value = serde_json::from_slice(&body).unwrap();
        let listed = listed["events"].as_array().unwrap();
        assert_eq!(listed.len(), stored.events.len());
        assert_eq!(listed.len(), log.len());
        assert!(texts_held(&log), "the tracker fetched them");
        assert_eq!(log.texts.get().unwrap().get(log.len() - 1), last);
        assert_eq!(log.texts.text_at(0).unwrap(), first);
        let cached = conv.read("s").await.unwrap().unwrap();
        assert!(texts_held(&cached), "and the cache keeps what was fetched");
        assert_eq!(
            cached.texts.get().unwrap(),
            &EventTexts::from_strs(stored.events.iter().map(|t| t.as_str()))
        );

        // A write leaves the texts in the store again; then the store loses them.
        conv.modify("s", |_| Ok((Some(Write::Append(bot.clone())), ())))
            .await
            .unwrap();
        let log = conv.read("s").await.unwrap().unwrap();
        assert!(!texts_held(&log));
        assert!(conv.store().delete("s").await.unwrap());
        match log.events("s") {
            Err(ConversationError::Changed { id }) => assert_eq!(id, "s"),
            other => panic!("{:?}", other.map(|e| e.len())),
        }
        let api: crate::http::ApiError = log.texts.get().unwrap_err().into();
        assert_eq!(api.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        // A reader that needs the texts reads again, from the store: the conversation is gone.
        assert!(conv.read_with_texts("s").await.unwrap().is_none());

        // Rewritten behind the cache's back: the reader gets the store's version.
        conv.modify("s", |_| Ok((Some(Write::Append(bot.clone())), ())))
            .await
            .unwrap();
        let two: Vec<String> = [1.0, 2.0]
            .iter()
            .map(|t| format!(r#"{{"event":"slot","timestamp":{t:?},"name":"n","value":1}}"#))
            .collect();
        conv.store().replace("s", two.clone()).await.unwrap();
        let log = conv.read_with_texts("s").await.unwrap().unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log.events("s").unwrap().len(), 2);
    }

    /// A conversation read from a sole-writer store (not cached) keeps the stored texts as
    /// they are, aligned with its parsed events; a legacy `topic` event, which is dropped,
    /// makes the texts be written again from the events.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_sole_writer_stores_texts_are_kept_as_read() {
        let (_dir, app, _agent) = served_hello_bot();
        let conv = &app.conversations;
        assert!(
            conv.sole_writer,
            "the in-memory store is written by this host only"
        );
        // Another key order than this host writes: kept, not written again.
        let stored = vec![
            r#"{"timestamp":1.0,"event":"slot","name":"n","value":1}"#.to_string(),
            r#"{"timestamp":2.0,"event":"pause"}"#.to_string(),
        ];
        conv.store().replace("cold", stored.clone()).await.unwrap();
        let log = conv.read("cold").await.unwrap().unwrap();
        assert_eq!(
            log.texts.get().unwrap(),
            &EventTexts::from_strs(stored.iter().map(String::as_str))
        );
        let events = log.events("cold").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].timestamp, 1.0);

        let with_topic = vec![
            stored[0].clone(),
            r#"{"event":"topic","topic":"t","timestamp":1.5}"#.to_string(),
            stored[1].clone(),
        ];
        conv.store().replace("topic", with_topic).await.unwrap();
        let log = conv.read("topic").await.unwrap().unwrap();
        let events = log.events("topic").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(log.texts.get().unwrap(), &EventTexts::of(&events));
    }

    #[test]
    fn damaged_cached_texts_give_the_typed_error() {
        let events =
            Event::list_from_json(&[json!({"event": "pause"}), json!({"event": "resume"})])
                .unwrap();
        for damaged in [
            "{\"event\":",
            "{\"event\":\"no_such_event\"}",
            "{\"event\":\"topic\"}",
        ] {
            let mut texts = EventTexts::of(&events);
            texts.push(damaged);
            let log = Log {
                epoch: 1,
                texts: super::LogTexts::Held(Arc::new(texts)),
                parsed: None,
            };
            let corrupt = |r: Result<_, ConversationError>| match r {
                Err(ConversationError::Corrupt { id, source }) => {
                    assert_eq!(id, "c");
                    assert!(source.0.starts_with("event 2"), "{source}");
                }
                Err(e) => panic!("{damaged}: {e}"),
                Ok(_) => panic!("{damaged}: parsed"),
            };
            corrupt(log.events("c").map(|_| ()));
            corrupt(log.events_from("c", 2).map(|_| ()));
            assert_eq!(log.events_from("c", 3).unwrap().len(), 0);
            let domain = Arc::new(crate::domain::Domain::empty());
            let states = crate::http::state_cache::StateCache::new(4);
            corrupt(states.take_for_log("c", &domain, &log).map(|_| ()));
        }
    }
}
