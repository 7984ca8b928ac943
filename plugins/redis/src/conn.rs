//! Connections: one lazily connecting, self-healing multiplexed connection per store, plus a
//! small pool of dedicated connections for blocking commands (`BLPOP`).
//!
//! Why lazy: Rasa's Redis stores do not connect at construction, and a Redis outage must not
//! stop the host from starting (it surfaces per request, as HTTP 503). redis'
//! `ConnectionManager::new_lazy_with_config` gives exactly that, and it reconnects by itself
//! after a failure, so a store never has to be recreated.
//!
//! Why a second kind of connection: a multiplexed connection pipelines every caller's commands
//! on one socket, so a blocking `BLPOP` would stall all of them. Lock waiters borrow a
//! dedicated connection from [`BlockingPool`] instead and return it when the wait ended
//! normally.

use std::sync::Mutex;
use std::time::Duration;

use colloquy_plugin_api::PluginError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};

use crate::config::RedisConfig;

/// Idle dedicated connections kept for reuse.
const POOL_MAX_IDLE: usize = 16;

/// Everything a store needs to talk to Redis.
pub struct Redis {
    client: Client,
    manager: ConnectionManager,
    pool: BlockingPool,
    timeout: Duration,
    /// For error messages; without the password.
    pub url: String,
}

impl Redis {
    /// Builds the client without connecting. Must run inside a tokio runtime (the SDK enters
    /// the plugin's runtime around constructors).
    pub fn new(config: &RedisConfig) -> Result<Self, PluginError> {
        let url = config.redacted_url();
        let client = build_client(config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.socket_timeout))
            .set_response_timeout(Some(config.socket_timeout))
            // Few, quick retries per reconnection round: a request during an outage should
            // fail fast (503) rather than hang; the next request starts a new round.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| PluginError::config(format!("Redis client for {url}: {e}")))?;
        Ok(Redis {
            client,
            manager,
            pool: BlockingPool::default(),
            timeout: config.socket_timeout,
            url,
        })
    }

    /// The shared multiplexed connection (cheap to clone).
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one request against the shared connection, bounded by `socket_timeout` (the
    /// connection also has a response timeout; this one covers reconnection rounds too).
    pub async fn run<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, PluginError> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(100), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_error(&self.url, what, &e)),
            Err(_) => Err(PluginError::timeout(format!(
                "Redis at {}: {what}: no answer within {:?}",
                self.url, self.timeout
            ))),
        }
    }

    /// Borrows a dedicated connection for a blocking command.
    pub async fn dedicated(&self) -> Result<MultiplexedConnection, PluginError> {
        if let Some(c) = self.pool.take() {
            return Ok(c);
        }
        // No response timeout: the caller bounds each blocking command itself.
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        self.run(
            "connect",
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
    }

    /// Returns a dedicated connection whose last command completed normally.
    pub fn give_back(&self, conn: MultiplexedConnection) {
        self.pool.put(conn);
    }

    /// `PING` through the shared connection, for `health`.
    pub async fn ping(&self) -> Result<(), PluginError> {
        let mut c = self.conn();
        self.run("PING", async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }
}

#[derive(Default)]
pub struct BlockingPool {
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl BlockingPool {
    fn take(&self) -> Option<MultiplexedConnection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
    fn put(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Maps a redis error to the plugin error kinds the host turns into HTTP statuses.
/// Redis answers these while it cannot serve for a moment (loading its dataset after a
/// restart, a failover in progress): the client should retry later, so they are 503s.
fn is_temporarily_unavailable(e: &RedisError) -> bool {
    const CODES: [&str; 4] = ["LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"];
    let text = e.to_string();
    // During connection set-up (SELECT) the code is lost and only the message remains.
    CODES
        .iter()
        .any(|code| e.code() == Some(*code) || text.contains(code))
        || text.contains("loading the dataset")
}

pub fn map_error(url: &str, what: &str, e: &RedisError) -> PluginError {
    let text = format!("Redis at {url}: {what}: {e}");
    if e.is_timeout() {
        PluginError::timeout(text)
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || is_temporarily_unavailable(e)
    {
        PluginError::connection(text)
    } else {
        PluginError::backend(text)
    }
}

fn build_client(config: &RedisConfig) -> Result<Client, PluginError> {
    let bad_url = |e: RedisError| {
        PluginError::config(format!("config key `url`: {}: {e}", config.redacted_url()))
    };
    let Some(tls) = &config.tls else {
        return Client::open(config.url.as_str()).map_err(bad_url);
    };
    // One crypto provider for this plugin's private copy of rustls; "already installed" is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| {
            PluginError::config(format!("config key `{key}`: cannot read {path:?}: {e}"))
        })
    };
    let client_tls = match (&tls.certfile, &tls.keyfile) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("ssl_certfile", cert)?,
            client_key: read("ssl_keyfile", key)?,
        }),
        _ => None,
    };
    let root_cert = match &tls.ca_certs {
        Some(path) => Some(read("ssl_ca_certs", path)?),
        None => None,
    };
    Client::build_with_tls(
        config.url.as_str(),
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| {
        PluginError::config(format!(
            "TLS settings (ssl_certfile/ssl_keyfile/ssl_ca_certs) for {}: {e}",
            config.redacted_url()
        ))
    })
}
