//! A Colloquy tracker store on SQLite (`type: sqlite`).
//!
//! Events are stored append-only in Rasa's SQL tracker store table, `events`, one row per event
//! with the columns Rasa's `SQLTrackerStore` writes (`id`, `sender_id`, `type_name`,
//! `timestamp`, `intent_name`, `action_name`, `data` = the event's JSON), so conversations can
//! be queried with plain SQL. A small side table, `colloquy_conversations`, keeps each
//! conversation's epoch (changed when the log is replaced) and length, so that the host can
//! read only the events it has not seen yet.
//!
//! rusqlite is blocking: every statement runs on the plugin runtime's blocking pool
//! (`tokio::task::spawn_blocking`), never on an async worker.
//!
//! ```yaml
//! tracker_store:
//!   type: sqlite
//!   path: /var/lib/colloquy/trackers.db
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colloquy_plugin_api::{export_plugin, sdk, EventLog, LogPosition, PluginError};
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// The `tracker_store` section of the endpoints YAML (besides `type`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The database file; created, with its tables, when it does not exist.
    path: PathBuf,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        sender_id VARCHAR(255) NOT NULL,
        type_name VARCHAR(255) NOT NULL,
        timestamp FLOAT,
        intent_name VARCHAR(255),
        action_name VARCHAR(255),
        data TEXT
    );
    CREATE INDEX IF NOT EXISTS ix_events_sender_id ON events (sender_id);
    CREATE TABLE IF NOT EXISTS colloquy_conversations (
        sender_id VARCHAR(255) PRIMARY KEY,
        epoch INTEGER NOT NULL,
        length INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS colloquy_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO colloquy_meta (key, value) VALUES ('next_epoch', 1);
";

/// Why a statement failed: SQLite itself, or an event that is not a JSON object.
enum StoreError {
    Sql(rusqlite::Error),
    Input(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e)
    }
}

fn plugin_error(op: &str, e: StoreError) -> PluginError {
    match e {
        StoreError::Input(msg) => PluginError::invalid_input(msg),
        StoreError::Sql(e) => {
            let busy = matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            );
            let msg = format!("sqlite {op}: {e}");
            if busy {
                // Another process holds the database: retrying later may work (503).
                PluginError::unavailable(msg)
            } else {
                PluginError::backend(msg)
            }
        }
    }
}

pub struct SqliteTrackerStore {
    path: PathBuf,
    /// One connection: SQLite serialises writers anyway, and appends must be atomic.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteTrackerStore {
    fn open(config: Config) -> Result<Self, PluginError> {
        let shown = config.path.display().to_string();
        let conn = Connection::open(&config.path).map_err(|e| {
            PluginError::config(format!("config key `path`: cannot open {shown}: {e}"))
        })?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(5))?;
            // Readers (e.g. the sqlite3 CLI) do not block the writer, nor the other way round.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.execute_batch(SCHEMA)
        };
        setup().map_err(|e| PluginError::config(format!("config key `path`: {shown}: {e}")))?;
        tracing::info!("SQLite tracker store at {shown}");
        Ok(SqliteTrackerStore {
            path: config.path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool of the plugin's runtime.
    async fn with_conn<T, F>(&self, op: &'static str, f: F) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A panic while the lock was held cannot leave a half-done write behind: an
            // unfinished transaction is rolled back when dropped.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|e| plugin_error(op, e)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(PluginError::backend(format!("sqlite {op}: {e}"))),
        }
    }
}

/// A conversation's `(epoch, length)`. Conversations written by Rasa's SQL tracker store have
/// rows in `events` only: they read as epoch 0 with the number of their rows.
fn position(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<(u64, u64)>> {
    let known = tx
        .query_row(
            "SELECT epoch, length FROM colloquy_conversations WHERE sender_id = ?1",
            [id],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
        )
        .optional()?;
    if known.is_some() {
        return Ok(known);
    }
    let rows: i64 = tx.query_row(
        "SELECT count(*) FROM events WHERE sender_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    Ok((rows > 0).then_some((0, rows as u64)))
}

/// A new epoch, never handed out before in this database.
fn fresh_epoch(tx: &Transaction<'_>) -> rusqlite::Result<u64> {
    let epoch: i64 = tx.query_row(
        "SELECT value FROM colloquy_meta WHERE key = 'next_epoch'",
        [],
        |row| row.get(0),
    )?;
    tx.execute(
        "UPDATE colloquy_meta SET value = ?1 WHERE key = 'next_epoch'",
        [epoch + 1],
    )?;
    Ok(epoch as u64)
}

/// Inserts the events with Rasa's columns: `intent_name` from `parse_data.intent.name`,
/// `action_name` from `name` (as Rasa does, for every event type that has one).
fn insert_events(tx: &Transaction<'_>, id: &str, events: &[String]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, text) in events.iter().enumerate() {
        let event: Value = serde_json::from_str(text)
            .map_err(|e| StoreError::Input(format!("event {i} is not valid JSON: {e}")))?;
        let Some(type_name) = event.get("event").and_then(Value::as_str) else {
            return Err(StoreError::Input(format!("event {i} has no `event` name")));
        };
        let timestamp = event.get("timestamp").and_then(Value::as_f64);
        let intent = event
            .pointer("/parse_data/intent/name")
            .and_then(Value::as_str);
        let action = event.get("name").and_then(Value::as_str);
        insert.execute(params![id, type_name, timestamp, intent, action, text])?;
    }
    Ok(())
}

fn set_position(tx: &Transaction<'_>, id: &str, epoch: u64, length: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO colloquy_conversations (sender_id, epoch, length) VALUES (?1, ?2, ?3)
         ON CONFLICT (sender_id) DO UPDATE SET epoch = excluded.epoch, length = excluded.length",
        params![id, epoch as i64, length as i64],
    )?;
    Ok(())
}

impl sdk::TrackerStorePlugin for SqliteTrackerStore {
    async fn load(&self, id: String, from: u64) -> Result<Option<EventLog>, PluginError> {
        self.with_conn("load", move |conn| {
            // One read transaction: the length and the events agree.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let Some((epoch, length)) = position(&tx, &id)? else {
                return Ok(None);
            };
            let events = {
                let mut select = tx.prepare_cached(
                    "SELECT data FROM events WHERE sender_id = ?1 ORDER BY id LIMIT -1 OFFSET ?2",
                )?;
                let rows = select
                    .query_map(params![id, from.min(i64::MAX as u64) as i64], |row| {
                        row.get::<_, String>(0)
                    })?;
                rows.collect::<rusqlite::Result<Vec<String>>>()?
            };
            tx.commit()?;
            Ok(Some(EventLog::from_vec(epoch, length, events)))
        })
        .await
    }

    async fn append(&self, id: String, events: Vec<String>) -> Result<LogPosition, PluginError> {
        self.with_conn("append", move |conn| {
            // IMMEDIATE: take the write lock up front, so that two processes appending to one
            // file wait for each other (busy timeout) instead of failing on lock upgrade.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (epoch, length) = match position(&tx, &id)? {
                Some(p) => p,
                None => (fresh_epoch(&tx)?, 0),
            };
            insert_events(&tx, &id, &events)?;
            let length = length + events.len() as u64;
            set_position(&tx, &id, epoch, length)?;
            tx.commit()?;
            Ok(LogPosition { epoch, length })
        })
        .await
    }

    async fn replace(&self, id: String, events: Vec<String>) -> Result<LogPosition, PluginError> {
        self.with_conn("replace", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let epoch = fresh_epoch(&tx)?;
            tx.execute("DELETE FROM events WHERE sender_id = ?1", [&id])?;
            insert_events(&tx, &id, &events)?;
            let length = events.len() as u64;
            set_position(&tx, &id, epoch, length)?;
            tx.commit()?;
            Ok(LogPosition { epoch, length })
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, PluginError> {
        self.with_conn("keys", |conn| {
            let mut select = conn.prepare_cached(
                "SELECT sender_id FROM colloquy_conversations
                 UNION SELECT DISTINCT sender_id FROM events ORDER BY 1",
            )?;
            let rows = select.query_map([], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn delete(&self, id: String) -> Result<bool, PluginError> {
        self.with_conn("delete", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let known = tx.execute(
                "DELETE FROM colloquy_conversations WHERE sender_id = ?1",
                [&id],
            )?;
            let rows = tx.execute("DELETE FROM events WHERE sender_id = ?1", [&id])?;
            tx.commit()?;
            Ok(known + rows > 0)
        })
        .await
    }

    async fn health(&self) -> Result<Value, PluginError> {
        let path = self.path.display().to_string();
        self.with_conn("health", move |conn| {
            let conversations: i64 =
                conn.query_row("SELECT count(*) FROM colloquy_conversations", [], |row| {
                    row.get(0)
                })?;
            Ok(json!({"ok": true, "path": path, "conversations": conversations}))
        })
        .await
    }

    async fn close(&self) -> Result<(), PluginError> {
        // Fold the write-ahead log into the database file, so that the file alone is complete.
        self.with_conn("close", |conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

fn tracker_store(
    config: &str,
    _ctx: &sdk::PluginContext,
) -> Result<SqliteTrackerStore, PluginError> {
    SqliteTrackerStore::open(sdk::parse_config(config)?)
}

export_plugin! {
    name: "sqlite",
    version: env!("CARGO_PKG_VERSION"),
    tracker_store: tracker_store,
}
