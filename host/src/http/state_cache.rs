//! Tracker states kept between requests, so that answering an append or running a turn costs
//! the new events, not a replay of the whole conversation (P2, P3 in docs/benchmarks.md).
//!
//! A state is valid for one epoch of a conversation's log and one domain (a model swap
//! changes the slots); it is extended with the events appended since it was computed. The
//! policies' featurisation rides along, extended the same way by the turn.
//!
//! A state holds what the tracker JSON needs besides the events' texts (the latest message's
//! parse data among it), so answering from a cached log parses only the events added since
//! the state was computed; a cold state parses them all.

use std::sync::Arc;

use crate::conversations::{ConversationError, Log};
use crate::domain::Domain;
use crate::engine::TrackerState;
use crate::policy::Featurised;
use crate::slot_cache::{Eviction, SlotCache};

/// The policies' featurisation of the applied events as last converted to story events and
/// folded in.
#[derive(Default, Clone)]
pub struct Stories {
    /// The state's `applied_generation` and the length of its `applied` when converted: the
    /// applied events then are a prefix of the state's while the generation is the same.
    pub generation: u64,
    pub applied: usize,
    pub featurised: Featurised,
}

/// What is remembered of a conversation between requests.
#[derive(Clone)]
pub struct Warm {
    /// Behind a pointer: a request takes the entry out of the cache and puts it back, and
    /// moving a pointer is cheaper than moving the state (~350 bytes, several times per
    /// request). An `Arc` because a turn shares it (`dialogue::Turn`); it is unshared
    /// again by the time it is put back, so `Arc::make_mut` does not copy.
    pub state: Arc<TrackerState>,
    /// Boxed: most conversations (API-only ones) have none, and every cached state has this.
    pub stories: Option<Box<Stories>>,
}

struct Entry {
    epoch: u64,
    domain: usize,
    warm: Warm,
}

impl Eviction for Entry {
    /// A state is a few allocations; featurised states are tens.
    fn heavy(&self) -> bool {
        self.warm.stories.is_some()
    }
}

pub struct StateCache {
    entries: SlotCache<Entry>,
}

impl StateCache {
    pub fn new(capacity: usize) -> StateCache {
        StateCache {
            entries: SlotCache::new(capacity),
        }
    }

    /// The cached state of `id` if it belongs to log `epoch` of at least `len` events and to
    /// `domain`; it is taken out either way (a stale one is dropped).
    fn take_valid(&self, id: &str, epoch: u64, domain: &Arc<Domain>, len: usize) -> Option<Warm> {
        let key = Arc::as_ptr(domain) as usize;
        self.entries
            .take(id)
            .filter(|e| e.epoch == epoch && e.domain == key && e.warm.state.seen <= len)
            .map(|e| e.warm)
    }

    /// The state of `log` (conversation `id`), from the cache when it can be extended. Only
    /// the events the cached state has not seen are parsed (unless they rewind or undo,
    /// which replays earlier ones); a cold state parses the whole log.
    pub fn take_for_log(
        &self,
        id: &str,
        domain: &Arc<Domain>,
        log: &Log,
    ) -> Result<Warm, ConversationError> {
        if let Some(mut warm) = self.take_valid(id, log.epoch, domain, log.len()) {
            let seen = warm.state.seen;
            let new = log.events_from(id, seen)?;
            let state = Arc::make_mut(&mut warm.state);
            if state.extend_by(domain, &new).is_err() {
                state.extend(domain, &log.events(id)?, seen);
            }
            return Ok(warm);
        }
        Ok(Warm {
            state: Arc::new(TrackerState::compute(domain, &log.events(id)?)),
            stories: None,
        })
    }

    /// How many events the remembered state of `id` has seen, if it has one for log `epoch`.
    #[cfg(test)]
    pub fn seen(&self, id: &str, epoch: u64) -> Option<usize> {
        self.entries
            .with(id, |e| (e.epoch == epoch).then_some(e.warm.state.seen))
            .flatten()
    }

    /// Keeps `warm` for the next request of `id`.
    pub fn put(&self, id: &str, epoch: u64, domain: &Arc<Domain>, warm: Warm) {
        let entry = Entry {
            epoch,
            domain: Arc::as_ptr(domain) as usize,
            warm,
        };
        self.entries.put(id, entry);
    }
}
