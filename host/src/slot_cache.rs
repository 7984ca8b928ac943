//! A least-recently-used cache of per-conversation values whose entries stay in place while
//! their value is taken out.
//!
//! Every request takes a conversation's cached log and state out (so that it can extend them
//! without copying) and puts the new ones back. With a plain `LruCache`, that is a removal and
//! an insertion per request: a node and a key string freed and allocated again. Here a taken
//! value leaves an empty slot that the next `put` fills in place. An empty slot reads as a
//! miss and is evicted like any other entry.
//!
//! An evicted value that takes many frees (parsed events, story states) is freed on a
//! background thread; a light one (texts, a state without stories) right away: a block freed
//! by another thread returns to its page only when the owning thread next looks there, and
//! freeing every evicted conversation that way held ~1.5 MB more at P6's 10,000 conversations.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use colloquy_plugin_api::sdk::KeyedHasher as IdHasher;

pub struct SlotCache<V> {
    slots: Mutex<LruCache<String, Option<V>, IdHasher>>,
}

/// How an evicted value is freed.
pub trait Eviction {
    /// Freeing it could take long (thousands of allocations): done off the request path.
    fn heavy(&self) -> bool;
}

impl<V: Eviction + Send + 'static> SlotCache<V> {
    /// A cache of at most `capacity` conversations (at least one).
    pub fn new(capacity: usize) -> SlotCache<V> {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        SlotCache {
            slots: Mutex::new(LruCache::with_hasher(capacity, IdHasher::default())),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, LruCache<String, Option<V>, IdHasher>> {
        // A panic while the lock was held cannot leave a slot half-written (every operation
        // is a single move), so a poisoned lock is still good.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the value of `id`, if there is one (it counts as a use).
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&V) -> T) -> Option<T> {
        self.slots().get(id).and_then(Option::as_ref).map(f)
    }

    /// Takes the value of `id` out, leaving its slot empty.
    pub fn take(&self, id: &str) -> Option<V> {
        self.slots().get_mut(id).and_then(Option::take)
    }

    /// Stores `value` for `id`, in its slot when it has one.
    pub fn put(&self, id: &str, value: V) {
        self.put_if(id, value, || true);
    }

    /// Stores `value` unless `keep` says no, deciding under the cache's lock.
    pub fn put_if(&self, id: &str, value: V, keep: impl FnOnce() -> bool) {
        let evicted = {
            let mut slots = self.slots();
            if !keep() {
                return;
            }
            match slots.get_mut(id) {
                Some(slot) => slot.replace(value),
                None => slots.push(id.to_string(), Some(value)).and_then(|(_, v)| v),
            }
        };
        match evicted {
            Some(old) if old.heavy() => drop_later(old),
            light => drop(light),
        }
    }
}

/// Drops `value` on a background thread. An evicted conversation can hold thousands of
/// parsed events and story states; freeing them on the request that evicts it stalled that
/// request and the ones queued behind it (P2's p99 with new senders: 3.5 ms without
/// evictions, 27–40 ms with). Falls back to dropping here if the thread cannot start, or
/// when [`MAX_PENDING_DROPS`] values wait already (the thread runs at a low priority, so a
/// server saturated for long could otherwise pile up evicted memory without bound).
fn drop_later<V: Send + 'static>(value: V) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Sender};
    use std::sync::OnceLock;
    type Garbage = Box<dyn Send>;
    static DROPPER: OnceLock<Option<Sender<Garbage>>> = OnceLock::new();
    static PENDING: AtomicUsize = AtomicUsize::new(0);
    let dropper = DROPPER.get_or_init(|| {
        let (tx, rx) = channel::<Garbage>();
        std::thread::Builder::new()
            .name("cache-dropper".into())
            .spawn(move || {
                lower_priority();
                for garbage in rx {
                    drop(garbage);
                    PENDING.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(tx) = dropper else {
        return drop(value);
    };
    if PENDING.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_DROPS {
        PENDING.fetch_sub(1, Ordering::AcqRel);
        return drop(value);
    }
    // A send only fails if the thread is gone; the value comes back and is dropped here.
    if tx.send(Box::new(value)).is_err() {
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Evicted values waiting for the background thread beyond which evictions free inline.
const MAX_PENDING_DROPS: usize = 4096;

/// Freeing is background work: at nice 10 the dropper gets about a tenth of a core that the
/// request workers want too, in short slices, instead of half of it in the scheduler's
/// default slices (~3 ms, which requests queued behind it wait out: P2's p99 with evictions).
/// When the workers are idle it runs at full speed. Failing to lower it is harmless.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (Linux nice values are per thread).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::{Eviction, SlotCache};

    impl Eviction for i32 {
        fn heavy(&self) -> bool {
            *self > 2
        }
    }

    #[test]
    fn taken_values_leave_a_miss_and_put_fills_the_slot() {
        let c = SlotCache::new(2);
        c.put("a", 1);
        assert_eq!(c.with("a", |v| *v), Some(1));
        assert_eq!(c.take("a"), Some(1));
        assert_eq!(c.take("a"), None, "an empty slot is a miss");
        assert_eq!(c.with("a", |v| *v), None);
        c.put("a", 2);
        assert_eq!(c.take("a"), Some(2));
        c.put_if("a", 3, || false);
        assert_eq!(c.with("a", |v| *v), None);
        c.put_if("a", 3, || true);
        assert_eq!(c.with("a", |v| *v), Some(3));
    }

    #[test]
    fn least_recently_used_conversations_are_evicted_empty_or_not() {
        let c = SlotCache::new(2);
        c.put("a", 1);
        c.put("b", 2);
        assert_eq!(c.take("a"), Some(1)); // `a` used last, now empty
        c.put("c", 3); // evicts `b`
        assert_eq!(c.with("b", |v| *v), None);
        c.put("d", 4); // evicts the empty `a`
        assert_eq!(c.with("c", |v| *v), Some(3));
        assert_eq!(c.with("d", |v| *v), Some(4));
    }

    /// A heavy value dropped on evicting is freed by the background thread, which runs at
    /// nice 10.
    #[cfg(target_os = "linux")]
    #[test]
    fn heavy_evictions_are_freed_by_a_low_priority_thread() {
        struct Heavy(std::sync::mpsc::Sender<String>);
        impl Eviction for Heavy {
            fn heavy(&self) -> bool {
                true
            }
        }
        impl Drop for Heavy {
            fn drop(&mut self) {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = self.0.send(name);
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let c = SlotCache::new(1);
        c.put("a", Heavy(tx.clone()));
        c.put("b", Heavy(tx)); // evicts `a`
        let dropped_on = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the evicted value was never dropped");
        assert_eq!(dropped_on, "cache-dropper");
        let nice = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "cache-dropper")
            })
            .map(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
                // Fields after the parenthesised name: state is field 3, nice field 19.
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                rest.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
            })
            .expect("no cache-dropper thread");
        assert_eq!(nice, 10);
    }
}
