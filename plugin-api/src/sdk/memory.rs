//! In-memory tracker and lock stores.
//!
//! They are the host's built-ins (`type: in_memory`, the default) and, exported from a cdylib,
//! the reference plugin the contract test suite runs against. They are also a working starting
//! point for a new store.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::KeyedHasher as IdHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use super::text_log::TextLog;
use super::traits::{LockStorePlugin, TrackerStorePlugin};
use crate::{EventLog, LogPosition, PluginError};

const SHARDS: usize = 32;

/// One conversation: its events' texts in a [`TextLog`] (no allocation per event, P6 in
/// docs/benchmarks.md; a long conversation grows by chunks, never by copying itself).
#[derive(Default)]
struct Log {
    epoch: u64,
    texts: TextLog,
}

impl Log {
    fn new(epoch: u64, events: &[String]) -> Log {
        Log {
            epoch,
            texts: TextLog::of(events.iter().map(String::as_str)),
        }
    }

    fn len(&self) -> usize {
        self.texts.len()
    }

    fn extend(&mut self, events: &[String]) {
        for e in events {
            self.texts.push(e);
        }
    }

    /// The texts of the events from index `from` on.
    fn events_from(&self, from: usize) -> Vec<String> {
        self.texts.texts_from(from)
    }
}

/// Conversations in memory, sharded so that different conversations rarely contend.
pub struct InMemoryTrackerStore {
    shards: Vec<Mutex<HashMap<String, Log, IdHasher>>>,
    shard_hasher: IdHasher,
    next_epoch: AtomicU64,
}

impl Default for InMemoryTrackerStore {
    fn default() -> Self {
        InMemoryTrackerStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(IdHasher::default())))
                .collect(),
            shard_hasher: IdHasher::default(),
            next_epoch: AtomicU64::new(1),
        }
    }
}

impl InMemoryTrackerStore {
    fn shard_of(&self, id: &str) -> usize {
        (self.shard_hasher.hash_one(id) as usize) % SHARDS
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Log, IdHasher>> {
        // A poisoned shard only means a panic happened while it was held; the data is intact
        // (every mutation below is a single push/replace).
        self.shards[self.shard_of(id)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl TrackerStorePlugin for InMemoryTrackerStore {
    async fn load(
        &self,
        conversation_id: String,
        from: u64,
    ) -> Result<Option<EventLog>, PluginError> {
        let shard = self.shard(&conversation_id);
        Ok(shard.get(&conversation_id).map(|log| {
            let start = usize::try_from(from).unwrap_or(usize::MAX).min(log.len());
            EventLog::from_vec(log.epoch, log.len() as u64, log.events_from(start))
        }))
    }

    async fn append(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginError> {
        let mut shard = self.shard(&conversation_id);
        let log = shard.entry(conversation_id).or_default();
        log.extend(&events);
        Ok(LogPosition {
            epoch: log.epoch,
            length: log.len() as u64,
        })
    }

    async fn replace(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginError> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shard(&conversation_id);
        let length = events.len() as u64;
        shard.insert(conversation_id, Log::new(epoch, &events));
        Ok(LogPosition { epoch, length })
    }

    async fn keys(&self) -> Result<Vec<String>, PluginError> {
        let mut keys = Vec::new();
        for shard in &self.shards {
            keys.extend(
                shard
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned(),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, conversation_id: String) -> Result<bool, PluginError> {
        Ok(self
            .shard(&conversation_id)
            .remove(&conversation_id)
            .is_some())
    }

    /// The conversations live in this process, written only by the host that loaded it, and
    /// `load` never waits.
    async fn call(&self, op: String, _payload: String) -> Result<String, PluginError> {
        match op.as_str() {
            crate::ops::CAPABILITIES => Ok(serde_json::to_string(&crate::StoreCapabilities {
                sole_writer: true,
                immediate_reads: true,
            })
            .expect("a struct of booleans serialises")),
            _ => Err(PluginError::unsupported(&op)),
        }
    }

    async fn health(&self) -> Result<serde_json::Value, PluginError> {
        let conversations: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum();
        Ok(serde_json::json!({"ok": true, "conversations": conversations}))
    }
}

struct Held {
    ticket: u64,
    expires: Instant,
    _guard: OwnedMutexGuard<()>,
}

#[derive(Default)]
struct ConversationLock {
    /// tokio's mutex queues waiters fairly (FIFO), which gives per-conversation ordering.
    mutex: Arc<tokio::sync::Mutex<()>>,
    holder: Mutex<Option<Held>>,
}

impl ConversationLock {
    /// Only the map refers to it, nobody holds it and nobody waits for it.
    fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && Arc::strong_count(&self.mutex) == 1
            && self
                .holder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
    }
}

/// FIFO locks per conversation within one process, with a lease lifetime: a holder that
/// never releases loses the lock once its lifetime is over. A conversation's entry lives while
/// the lock is held or waited for. (Keeping released entries for the next request measured
/// no faster in P1, so the map holds only the conversations in use.)
#[derive(Default)]
pub struct InMemoryLockStore {
    locks: Mutex<HashMap<String, Arc<ConversationLock>, IdHasher>>,
    next_ticket: AtomicU64,
}

impl InMemoryLockStore {
    fn entry(&self, id: &str) -> Arc<ConversationLock> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(id) {
            return lock.clone();
        }
        let lock = Arc::<ConversationLock>::default();
        locks.insert(id.to_string(), lock.clone());
        lock
    }

    fn forget_if_idle(&self, id: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(id).is_some_and(ConversationLock::is_idle) {
            locks.remove(id);
        }
    }

    /// How many conversations have an entry (held or waited for).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl LockStorePlugin for InMemoryLockStore {
    async fn acquire(
        &self,
        conversation_id: String,
        lifetime_ms: u64,
        wait_ms: u64,
    ) -> Result<String, PluginError> {
        let entry = self.entry(&conversation_id);
        // 0 asks for the store's default lease, 60 s as in Rasa.
        let lifetime = Duration::from_millis(if lifetime_ms == 0 {
            60_000
        } else {
            lifetime_ms
        });
        let hold = |guard: OwnedMutexGuard<()>| {
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            *entry.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held {
                ticket,
                expires: Instant::now() + lifetime,
                _guard: guard,
            });
            ticket.to_string()
        };
        // Uncontended (the common case): no deadline, no timer.
        if let Ok(guard) = entry.mutex.clone().try_lock_owned() {
            return Ok(hold(guard));
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let holder_expires = entry
                .holder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|h| h.expires);
            let now = Instant::now();
            let until = match holder_expires {
                Some(exp) => exp.min(deadline),
                None => deadline,
            };
            let wait = until.saturating_duration_since(now);
            match tokio::time::timeout(wait, entry.mutex.clone().lock_owned()).await {
                Ok(guard) => return Ok(hold(guard)),
                Err(_) => {
                    let now = Instant::now();
                    // Expire a holder whose lease is over; its release will then be a no-op.
                    let mut holder = entry.holder.lock().unwrap_or_else(|p| p.into_inner());
                    if holder.as_ref().is_some_and(|h| h.expires <= now) {
                        *holder = None;
                        continue;
                    }
                    drop(holder);
                    if now >= deadline {
                        drop(entry);
                        self.forget_if_idle(&conversation_id);
                        return Err(PluginError::timeout(format!(
                            "lock for conversation '{conversation_id}' not acquired within {wait_ms} ms"
                        )));
                    }
                }
            }
        }
    }

    async fn release(&self, conversation_id: String, ticket: String) -> Result<(), PluginError> {
        // One look-up under the map's lock: release, then drop the entry if nobody else
        // holds or waits for it (a waiter holds a clone of the entry).
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = locks.get(&conversation_id) else {
            return Ok(());
        };
        // A ticket that is not the holder's (or not a number) releases nothing.
        let released = {
            let mut holder = entry.holder.lock().unwrap_or_else(|p| p.into_inner());
            if holder
                .as_ref()
                .is_some_and(|h| ticket.parse::<u64>() == Ok(h.ticket))
            {
                holder.take()
            } else {
                None
            }
        };
        // Unlocks the conversation (and wakes its next waiter) before the idle check.
        drop(released);
        if entry.is_idle() {
            locks.remove(&conversation_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::{lock_store_box, testkit, tracker_store_box};

    /// A released or abandoned lock leaves no entry behind; a held one stays held.
    #[tokio::test]
    async fn only_locks_in_use_have_entries() {
        let store = InMemoryLockStore::default();
        let held = store.acquire("held".into(), 0, 0).await.unwrap();
        for i in 0..100 {
            let id = format!("c{i}");
            let ticket = store.acquire(id.clone(), 0, 0).await.unwrap();
            store.release(id, ticket).await.unwrap();
        }
        assert_eq!(store.entries(), 1);
        // Still held: a second acquire must wait, and times out without leaving a waiter.
        let err = store.acquire("held".into(), 0, 10).await.unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::TIMEOUT);
        assert_eq!(store.entries(), 1);
        // A wrong ticket releases nothing; the right one does.
        store.release("held".into(), "nope".into()).await.unwrap();
        store.release("held".into(), "12345".into()).await.unwrap();
        assert!(store.acquire("held".into(), 0, 10).await.is_err());
        store.release("held".into(), held).await.unwrap();
        assert_eq!(store.entries(), 0);
        let again = store.acquire("held".into(), 0, 10).await.unwrap();
        store.release("held".into(), again).await.unwrap();
        assert_eq!(store.entries(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_stores_pass_the_contract() {
        let store = tracker_store_box(InMemoryTrackerStore::default(), None);
        let report = testkit::tracker_store_suite(&store, "t-").await;
        assert!(report.passed(), "{}", report.render());
        let locks = lock_store_box(InMemoryLockStore::default(), None);
        let report = testkit::lock_store_suite(&locks, "t-").await;
        assert!(report.passed(), "{}", report.render());
    }

    /// The contract holds a store to its `immediate_reads` claim: the in-memory store keeps
    /// it; the same store whose `load` waits on a timer fails that check (and only that one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_claiming_immediate_reads_must_answer_at_once() {
        struct Slow(InMemoryTrackerStore);
        impl TrackerStorePlugin for Slow {
            async fn load(&self, id: String, from: u64) -> Result<Option<EventLog>, PluginError> {
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.0.load(id, from).await
            }
            async fn append(&self, id: String, e: Vec<String>) -> Result<LogPosition, PluginError> {
                self.0.append(id, e).await
            }
            async fn replace(
                &self,
                id: String,
                e: Vec<String>,
            ) -> Result<LogPosition, PluginError> {
                self.0.replace(id, e).await
            }
            async fn keys(&self) -> Result<Vec<String>, PluginError> {
                self.0.keys().await
            }
            async fn delete(&self, id: String) -> Result<bool, PluginError> {
                self.0.delete(id).await
            }
            async fn call(&self, op: String, payload: String) -> Result<String, PluginError> {
                self.0.call(op, payload).await
            }
            async fn health(&self) -> Result<serde_json::Value, PluginError> {
                self.0.health().await
            }
        }
        let store = tracker_store_box(Slow(InMemoryTrackerStore::default()), None);
        let report = testkit::tracker_store_suite(&store, "t-").await;
        let failed: Vec<_> = report.failures().iter().map(|c| c.name).collect();
        assert_eq!(
            failed,
            ["a store claiming immediate_reads answers load on its first poll"],
            "{}",
            report.render()
        );
    }

    #[tokio::test]
    async fn a_panicking_component_fails_the_call_only() {
        struct Boom;
        impl TrackerStorePlugin for Boom {
            async fn load(&self, _: String, _: u64) -> Result<Option<EventLog>, PluginError> {
                panic!("boom")
            }
            async fn append(&self, _: String, _: Vec<String>) -> Result<LogPosition, PluginError> {
                unreachable!()
            }
            async fn replace(&self, _: String, _: Vec<String>) -> Result<LogPosition, PluginError> {
                unreachable!()
            }
            async fn keys(&self) -> Result<Vec<String>, PluginError> {
                Ok(vec![])
            }
            async fn delete(&self, _: String) -> Result<bool, PluginError> {
                Ok(false)
            }
        }
        let store = tracker_store_box(Boom, None);
        match store.load("x".into(), 0).await {
            abi_stable::std_types::RResult::RErr(e) => {
                assert_eq!(e.kind, crate::ErrorKind::PANIC);
                assert!(e.message.contains("boom"));
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(
            store.keys().await.is_ok(),
            "the component keeps working after a panic"
        );
    }
}
