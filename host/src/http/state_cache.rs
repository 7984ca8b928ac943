//! Tracker states kept between requests, so that answering an append costs the new events,
//! not a replay of the whole conversation (P3 in docs/benchmarks.md).
//!
//! A state is valid for one epoch of a conversation's log and one domain (a model swap
//! changes the slots); it is extended with the events appended since it was computed.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::domain::Domain;
use crate::engine::{Event, TrackerState};

struct Entry {
    epoch: u64,
    domain: usize,
    state: TrackerState,
}

pub struct StateCache {
    entries: Mutex<LruCache<String, Entry>>,
}

impl StateCache {
    pub fn new(capacity: usize) -> StateCache {
        StateCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("non-zero"),
            )),
        }
    }

    /// The state of `events` (log `epoch`), from the cache when it can be extended.
    pub fn take(
        &self,
        id: &str,
        epoch: u64,
        domain: &Arc<Domain>,
        events: &[Event],
    ) -> TrackerState {
        let key = Arc::as_ptr(domain) as usize;
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(id);
        match cached {
            Some(mut e) if e.epoch == epoch && e.domain == key && e.state.seen <= events.len() => {
                e.state.extend(domain, events, e.state.seen);
                e.state
            }
            _ => TrackerState::compute(domain, events),
        }
    }

    /// Keeps `state` for the next request of `id`.
    pub fn put(&self, id: &str, epoch: u64, domain: &Arc<Domain>, state: TrackerState) {
        let entry = Entry {
            epoch,
            domain: Arc::as_ptr(domain) as usize,
            state,
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(id.to_string(), entry);
    }
}
