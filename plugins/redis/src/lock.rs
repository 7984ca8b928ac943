//! The Redis lock store: FIFO ticket locks per conversation, shared by every host process.
//!
//! Why not Rasa's algorithm: Rasa keeps a JSON ticket list under `lock:<id>` and updates it
//! with GET-modify-SET (racy across processes) and polls every second (adds up to 1 s per
//! queued message). Here every step is one Lua script (atomic on the server) and a waiter is
//! woken by a push instead of polling.
//!
//! Keys (`P` = `<key_prefix>:` or nothing; fixed namespaces before the id so that ids cannot
//! collide, and different from Rasa's `lock:<id>` string so a left-over Rasa lock is ignored):
//! * `P lock_queue:<id>`    LIST of tickets, FIFO; the head holds the lock once granted;
//! * `P lock_tickets:<id>`  HASH ticket → `W:<give-up ms>:<lifetime ms>` | `H:<expiry ms>`;
//! * `P lock_wake:<ticket>` LIST a waiter `BLPOP`s; whoever grants it the lock `LPUSH`es;
//! * `P lock_seq`           ticket counter (tickets are unique across processes).
//!
//! Algorithm: `acquire` enqueues a ticket; if the head is free or its lease expired, the head
//! is granted at once. Otherwise the waiter blocks on its wake key until it is pushed, until
//! the current holder's lease ends (the script tells how long that is: a dead holder is
//! detected exactly when its lease runs out, without polling), or until a 5 s fallback, and
//! then re-checks with a script. `release` (also used by a waiter that gives up) removes the
//! ticket and grants the next live waiter, pushing its wake key. Expired holders and waiters
//! past their give-up time are dropped when they reach the head. All times are Redis' clock.
//!
//! A waiting `acquire` whose future is dropped (host-side timeout) releases its ticket from a
//! background task, so an abandoned waiter never ends up holding the lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use colloquy_plugin_api::{sdk::LockStorePlugin, PluginError};
use redis::{Script, Value};
use serde_json::json;

use crate::config::RedisConfig;
use crate::conn::{map_error, Redis};

macro_rules! lock_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/lock_common.lua"),
            include_str!($file)
        ))
    };
}

/// Longest single blocking wait; a safety net against a lost wake-up, not the wake mechanism.
const FALLBACK_WAIT: Duration = Duration::from_secs(5);
/// Margin on the waiter's give-up time in Redis, for client/server timing differences.
const GIVE_UP_GRACE_MS: u64 = 250;

pub struct RedisLockStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    prefix: String,
    default_lifetime: Duration,
    /// The runtime the store was built in, for withdrawing abandoned tickets from `Drop`
    /// when no runtime is entered there.
    rt: Option<tokio::runtime::Handle>,
    acquire: Script,
    check: Script,
    release: Script,
}

impl RedisLockStore {
    /// Builds the store without connecting (see [`crate::conn`]).
    pub fn new(config: &RedisConfig) -> Result<Self, PluginError> {
        Ok(RedisLockStore {
            inner: Arc::new(Inner {
                redis: Redis::new(config)?,
                prefix: config.key_prefix.clone(),
                default_lifetime: config.lifetime,
                rt: tokio::runtime::Handle::try_current().ok(),
                acquire: lock_script!("lua/lock_acquire.lua"),
                check: lock_script!("lua/lock_check.lua"),
                release: lock_script!("lua/lock_release.lua"),
            }),
        })
    }
}

impl Inner {
    fn wake_prefix(&self) -> String {
        format!("{}lock_wake:", self.prefix)
    }

    async fn eval(
        &self,
        what: &str,
        script: &Script,
        id: &str,
        args: &[String],
    ) -> Result<Value, PluginError> {
        let p = &self.prefix;
        let mut inv = script.prepare_invoke();
        inv.key(format!("{p}lock_queue:{id}"))
            .key(format!("{p}lock_tickets:{id}"))
            .key(format!("{p}lock_seq"));
        inv.arg(self.wake_prefix());
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.redis.conn();
        self.redis
            .run(
                what,
                async move { inv.invoke_async::<Value>(&mut conn).await },
            )
            .await
    }

    async fn release(&self, id: &str, ticket: &str) -> Result<(), PluginError> {
        self.eval("lock release", &self.release, id, &[ticket.to_string()])
            .await
            .map(|_| ())
    }

    /// Blocks on the ticket's wake key for at most `wait`; `Ok(true)` when woken.
    async fn block(&self, ticket: &str, wait: Duration) -> Result<bool, PluginError> {
        let mut conn = self.redis.dedicated().await?;
        let key = format!("{}lock_wake:{ticket}", self.prefix);
        // BLPOP takes (fractional) seconds; 0 would mean forever.
        let secs = wait.as_secs_f64().max(0.01);
        let cmd = redis::cmd("BLPOP")
            .arg(&key)
            .arg(format!("{secs:.3}"))
            .clone();
        let bound = wait + self.redis.timeout();
        match tokio::time::timeout(bound, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.redis.give_back(conn);
                Ok(!matches!(v, Value::Nil))
            }
            // The connection is dropped, not pooled: its state is unknown.
            Ok(Err(e)) => Err(map_error(&self.redis.url, "BLPOP", &e)),
            Err(_) => Err(PluginError::timeout(format!(
                "Redis at {}: BLPOP did not return within {bound:?}",
                self.redis.url
            ))),
        }
    }

    async fn acquire(
        &self,
        id: &str,
        ticket_slot: &mut Option<String>,
        lifetime: Duration,
        wait: Duration,
    ) -> Result<String, PluginError> {
        let deadline = Instant::now() + wait;
        let give_up_ms = wait.as_millis() as u64 + GIVE_UP_GRACE_MS;
        let reply = self
            .eval(
                "lock acquire",
                &self.acquire,
                id,
                &[
                    give_up_ms.to_string(),
                    (lifetime.as_millis() as u64).max(1).to_string(),
                ],
            )
            .await?;
        let (ticket, held, mut holder_ms) = match &reply {
            Value::Array(items) => match items.as_slice() {
                [t, h, ms] => (text(t), int(h), int(ms)),
                _ => (None, None, None),
            },
            _ => (None, None, None),
        };
        let (Some(ticket), Some(held), Some(ms)) = (ticket, held, holder_ms.take()) else {
            return Err(PluginError::backend(format!(
                "Redis lock acquire: unexpected script reply {reply:?}"
            )));
        };
        if held == 1 {
            return Ok(ticket);
        }
        *ticket_slot = Some(ticket.clone());
        let mut holder_ms = ms.max(0) as u64;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                // Withdraw now rather than from the drop guard, so the next waiter moves up.
                self.release(id, &ticket).await?;
                *ticket_slot = None;
                return Err(PluginError::timeout(format!(
                    "lock for conversation '{id}' not acquired within {} ms",
                    wait.as_millis()
                )));
            }
            // Wake up when pushed, when the holder's lease ends, or at the fallback.
            let nap = remaining
                .min(Duration::from_millis(holder_ms + 5))
                .min(FALLBACK_WAIT);
            self.block(&ticket, nap).await?;
            let reply = self
                .eval("lock check", &self.check, id, std::slice::from_ref(&ticket))
                .await?;
            let (status, ms) = match &reply {
                Value::Array(items) => match items.as_slice() {
                    [s, ms] => (int(s), int(ms)),
                    _ => (None, None),
                },
                _ => (None, None),
            };
            match (status, ms) {
                (Some(1), _) => {
                    *ticket_slot = None;
                    return Ok(ticket);
                }
                (Some(0), Some(ms)) => holder_ms = ms.max(0) as u64,
                (Some(-1), _) => {
                    *ticket_slot = None;
                    return Err(PluginError::timeout(format!(
                        "lock for conversation '{id}' not acquired within {} ms",
                        wait.as_millis()
                    )));
                }
                _ => {
                    return Err(PluginError::backend(format!(
                        "Redis lock check: unexpected script reply {reply:?}"
                    )))
                }
            }
        }
    }
}

/// Releases a waiter's ticket if its `acquire` ends without the lock: by error, by timeout,
/// or by the future being dropped.
struct Abandon {
    inner: Arc<Inner>,
    id: String,
    ticket: Option<String>,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let inner = self.inner.clone();
            let id = std::mem::take(&mut self.id);
            let rt = tokio::runtime::Handle::try_current()
                .ok()
                .or_else(|| self.inner.rt.clone());
            if let Some(rt) = rt {
                rt.spawn(async move {
                    if let Err(e) = inner.release(&id, &ticket).await {
                        tracing::warn!(
                            "could not withdraw lock ticket {ticket} of conversation '{id}': {e}"
                        );
                    }
                });
            }
        }
    }
}

impl LockStorePlugin for RedisLockStore {
    async fn acquire(
        &self,
        conversation_id: String,
        lifetime_ms: u64,
        wait_ms: u64,
    ) -> Result<String, PluginError> {
        let lifetime = if lifetime_ms == 0 {
            self.inner.default_lifetime
        } else {
            Duration::from_millis(lifetime_ms)
        };
        let mut guard = Abandon {
            inner: self.inner.clone(),
            id: conversation_id.clone(),
            ticket: None,
        };
        self.inner
            .acquire(
                &conversation_id,
                &mut guard.ticket,
                lifetime,
                Duration::from_millis(wait_ms),
            )
            .await
    }

    async fn release(&self, conversation_id: String, ticket: String) -> Result<(), PluginError> {
        self.inner.release(&conversation_id, &ticket).await
    }

    async fn health(&self) -> Result<serde_json::Value, PluginError> {
        match self.inner.redis.ping().await {
            Ok(()) => Ok(json!({"ok": true, "url": self.inner.redis.url})),
            Err(e) => {
                Ok(json!({"ok": false, "url": self.inner.redis.url, "error": e.message.as_str()}))
            }
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}
