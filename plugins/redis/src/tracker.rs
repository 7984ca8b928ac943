//! The Redis tracker store: one append-only Redis LIST of event JSON strings per conversation.
//!
//! Why a list: Rasa's Redis store rewrites the whole tracker (one JSON string) on every turn,
//! which is O(n) per turn and O(n²) over a conversation (rasa-endpoints-and-protocols.md §2.8).
//! `RPUSH` makes an append O(new events) whatever the history length, and one script call is
//! atomic, so a multi-event append is all-or-nothing and concurrent appends never interleave.
//!
//! Keys (`P` = `<key_prefix>:` or nothing, exactly Rasa's naming for the log itself):
//! * `P tracker:<id>`        LIST of events (or, before conversion, Rasa's STRING value);
//! * `P tracker_epoch:<id>`  the log's epoch; it also marks an existing but empty log, since
//!   Redis deletes empty lists;
//! * `P tracker_epoch_seq`   counter that hands out epochs, so that an epoch is never reused
//!   for the same id, even after a delete.
//!
//! The namespaces differ before the id (`tracker:` vs `tracker_epoch:`), so no conversation id
//! can collide with another conversation's epoch key.
//!
//! Rasa 3.x compatibility: a STRING value `{"events": [...], "name": ...}` under
//! `P tracker:<id>` is read transparently, and converted to the list form (atomically, only
//! if unchanged since it was read) before the first append. A replace simply overwrites it.

use colloquy_plugin_api::{sdk::TrackerStorePlugin, EventLog, LogPosition, PluginError};
use redis::{Script, Value};
use serde_json::json;

use crate::config::RedisConfig;
use crate::conn::Redis;

macro_rules! tracker_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/tracker_common.lua"),
            include_str!($file)
        ))
    };
}

/// How many times an append retries a conversion that raced with another writer.
const CONVERT_ATTEMPTS: usize = 5;

pub struct RedisTrackerStore {
    redis: Redis,
    prefix: String,
    ttl_secs: u64,
    load: Script,
    append: Script,
    replace: Script,
    convert: Script,
}

impl RedisTrackerStore {
    /// Builds the store without connecting (see [`crate::conn`]).
    pub fn new(config: &RedisConfig) -> Result<Self, PluginError> {
        Ok(RedisTrackerStore {
            redis: Redis::new(config)?,
            prefix: config.key_prefix.clone(),
            ttl_secs: config.record_exp.map(|d| d.as_secs().max(1)).unwrap_or(0),
            load: tracker_script!("lua/tracker_load.lua"),
            append: tracker_script!("lua/tracker_append.lua"),
            replace: tracker_script!("lua/tracker_replace.lua"),
            convert: tracker_script!("lua/tracker_convert.lua"),
        })
    }

    /// `[log key, epoch key, epoch counter]` for a conversation.
    fn keys_of(&self, id: &str) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}tracker:{id}"),
            format!("{p}tracker_epoch:{id}"),
            format!("{p}tracker_epoch_seq"),
        ]
    }

    async fn eval(
        &self,
        what: &str,
        script: &Script,
        id: &str,
        args: &[&str],
    ) -> Result<Value, PluginError> {
        let mut inv = script.prepare_invoke();
        for k in self.keys_of(id) {
            inv.key(k);
        }
        inv.arg(self.ttl_secs);
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.redis.conn();
        self.redis
            .run(
                what,
                async move { inv.invoke_async::<Value>(&mut conn).await },
            )
            .await
    }

    /// Converts a Rasa-written string value to the list form; `Ok(false)` if it changed meanwhile.
    async fn convert_legacy(&self, id: &str, raw: &str) -> Result<bool, PluginError> {
        let events = parse_legacy(id, raw)?;
        let mut args: Vec<&str> = Vec::with_capacity(events.len() + 1);
        args.push(raw);
        args.extend(events.iter().map(String::as_str));
        let v = self
            .eval("convert Rasa tracker", &self.convert, id, &args)
            .await?;
        Ok(matches!(v, Value::Int(1)))
    }

    async fn read_legacy(&self, id: &str) -> Result<Option<String>, PluginError> {
        let mut conn = self.redis.conn();
        let key = self.keys_of(id)[0].clone();
        let v: Value = self
            .redis
            .run("GET", async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(match v {
            Value::BulkString(b) => Some(
                String::from_utf8(b)
                    .map_err(|_| bad_value(id, "the stored tracker is not UTF-8"))?,
            ),
            _ => None,
        })
    }
}

impl TrackerStorePlugin for RedisTrackerStore {
    async fn load(
        &self,
        conversation_id: String,
        from: u64,
    ) -> Result<Option<EventLog>, PluginError> {
        let reply = self
            .eval("load", &self.load, &conversation_id, &[&from.to_string()])
            .await?;
        match reply {
            Value::Nil => Ok(None),
            Value::Array(items) => match items.as_slice() {
                [tag, raw] if is_str(tag, "legacy") => {
                    let raw = text(raw)
                        .ok_or_else(|| bad_value(&conversation_id, "unreadable Rasa tracker"))?;
                    let events = parse_legacy(&conversation_id, &raw)?;
                    let length = events.len() as u64;
                    let start = (from as usize).min(events.len());
                    Ok(Some(EventLog::from_vec(
                        0,
                        length,
                        events[start..].to_vec(),
                    )))
                }
                [tag, epoch, length, Value::Array(events)] if is_str(tag, "list") => {
                    let epoch = int(epoch).ok_or_else(|| unexpected("load", &reply_dbg(&items)))?;
                    let length =
                        int(length).ok_or_else(|| unexpected("load", &reply_dbg(&items)))?;
                    let events = events
                        .iter()
                        .map(|e| {
                            text(e)
                                .ok_or_else(|| bad_value(&conversation_id, "an event is not UTF-8"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Some(EventLog::from_vec(epoch, length, events)))
                }
                _ => Err(unexpected("load", &reply_dbg(&items))),
            },
            other => Err(unexpected("load", &format!("{other:?}"))),
        }
    }

    async fn append(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginError> {
        let args: Vec<&str> = events.iter().map(String::as_str).collect();
        for _ in 0..CONVERT_ATTEMPTS {
            let reply = self
                .eval("append", &self.append, &conversation_id, &args)
                .await?;
            if let Some(pos) = position(&reply) {
                return Ok(pos);
            }
            if !is_str(&reply, "legacy") {
                return Err(unexpected("append", &format!("{reply:?}")));
            }
            // A Rasa-written tracker: convert it, then append (both steps are atomic).
            if let Some(raw) = self.read_legacy(&conversation_id).await? {
                self.convert_legacy(&conversation_id, &raw).await?;
            }
        }
        Err(PluginError::new(
            colloquy_plugin_api::ErrorKind::CONFLICT,
            format!("conversation '{conversation_id}': the Rasa-written tracker kept changing during conversion"),
        ))
    }

    async fn replace(
        &self,
        conversation_id: String,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginError> {
        let args: Vec<&str> = events.iter().map(String::as_str).collect();
        let reply = self
            .eval("replace", &self.replace, &conversation_id, &args)
            .await?;
        position(&reply).ok_or_else(|| unexpected("replace", &format!("{reply:?}")))
    }

    async fn keys(&self) -> Result<Vec<String>, PluginError> {
        let mut ids = std::collections::BTreeSet::new();
        for ns in ["tracker:", "tracker_epoch:"] {
            let start = format!("{}{ns}", self.prefix);
            let pattern = format!("{}*", glob_escape(&start));
            let mut cursor: u64 = 0;
            loop {
                let mut conn = self.redis.conn();
                let cmd = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .clone();
                let (next, keys): (u64, Vec<Vec<u8>>) = self
                    .redis
                    .run("SCAN", async move { cmd.query_async(&mut conn).await })
                    .await?;
                for k in keys {
                    // Ids are whatever the host stored; keys that are not UTF-8 are not ours.
                    if let Ok(k) = String::from_utf8(k) {
                        if let Some(id) = k.strip_prefix(&start) {
                            ids.insert(id.to_string());
                        }
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(ids.into_iter().collect())
    }

    async fn delete(&self, conversation_id: String) -> Result<bool, PluginError> {
        let [log, epoch, _] = self.keys_of(&conversation_id);
        let mut conn = self.redis.conn();
        let n: i64 = self
            .redis
            .run("DEL", async move {
                redis::cmd("DEL")
                    .arg(log)
                    .arg(epoch)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(n > 0)
    }

    async fn health(&self) -> Result<serde_json::Value, PluginError> {
        match self.redis.ping().await {
            Ok(()) => Ok(json!({"ok": true, "url": self.redis.url})),
            Err(e) => Ok(json!({"ok": false, "url": self.redis.url, "error": e.message.as_str()})),
        }
    }
}

/// The events of a Rasa-written `{"events": [...], "name": ...}` value, re-serialised one by
/// one (key order and float values are preserved by serde_json's `preserve_order` and
/// `float_roundtrip` features).
pub fn parse_legacy(id: &str, raw: &str) -> Result<Vec<String>, PluginError> {
    let doc: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| bad_value(id, &format!("the Rasa tracker is not JSON ({e})")))?;
    let events = doc
        .get("events")
        .and_then(|e| e.as_array())
        .ok_or_else(|| bad_value(id, "the Rasa tracker has no \"events\" list"))?;
    Ok(events.iter().map(|e| e.to_string()).collect())
}

fn position(v: &Value) -> Option<LogPosition> {
    match v {
        Value::Array(items) => match items.as_slice() {
            [epoch, length] => Some(LogPosition {
                epoch: int(epoch)?,
                length: int(length)?,
            }),
            _ => None,
        },
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn is_str(v: &Value, want: &str) -> bool {
    match v {
        Value::BulkString(b) => b == want.as_bytes(),
        Value::SimpleString(s) => s == want,
        _ => false,
    }
}

fn reply_dbg(items: &[Value]) -> String {
    let s = format!("{items:?}");
    s.chars().take(200).collect()
}

fn unexpected(what: &str, reply: &str) -> PluginError {
    PluginError::backend(format!("Redis {what}: unexpected script reply {reply}"))
}

fn bad_value(id: &str, why: &str) -> PluginError {
    PluginError::backend(format!("conversation '{id}': {why}"))
}

/// Escapes Redis glob metacharacters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
