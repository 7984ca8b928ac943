//! Start-up, serving and shutdown of `colloquy run`, and the other commands.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, Method};
use thiserror::Error;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::cli::{PluginTestArgs, RunArgs};
use crate::config::{ComponentConfig, Endpoints, EndpointsError};
use crate::conversations::Conversations;
use crate::domain::Domain;
use crate::http::auth::{Auth, AuthConfigError};
use crate::http::{AppState, Limits};
use crate::plugins::{Kind, Registry, RegistryError};

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Endpoints(#[from] EndpointsError),
    #[error("endpoints file {0} does not exist")]
    EndpointsMissing(String),
    #[error(transparent)]
    Plugin(#[from] RegistryError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot load the model {0}")]
    Model(String),
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: String,
        source: std::io::Error,
    },
}

/// Reads the endpoints file. The default name may be absent (no endpoints), an explicit
/// path must exist.
pub fn load_endpoints(args: &RunArgs) -> Result<Endpoints, StartError> {
    if args.endpoints.exists() {
        Ok(Endpoints::load(&args.endpoints)?)
    } else if args.endpoints.as_os_str() == "endpoints.yml" {
        Ok(Endpoints::default())
    } else {
        Err(StartError::EndpointsMissing(
            args.endpoints.display().to_string(),
        ))
    }
}

/// Builds everything `run` serves. Split from `run` so that tests and benchmarks can reuse it.
pub fn build_state(
    args: &RunArgs,
    endpoints: &Endpoints,
) -> Result<(Arc<AppState>, Option<crate::plugins::ModelSourceHandle>), StartError> {
    if args.ssl_certificate.is_some() || args.ssl_keyfile.is_some() {
        return Err(StartError::Unsupported(
            "--ssl-certificate/--ssl-keyfile are not supported yet; terminate TLS in a reverse proxy in front of Colloquy".into(),
        ));
    }
    let mut registry = Registry::new(&args.plugins.plugin_dirs);
    if args.plugin_timeout > 0 {
        registry.call_timeout = Duration::from_secs(args.plugin_timeout);
    }
    let store = registry.tracker_store(endpoints.tracker_store.as_ref())?;
    let locks = registry.lock_store(endpoints.lock_store.as_ref())?;
    let broker = match &endpoints.event_broker {
        Some(cfg) => Some(registry.event_broker(cfg)?),
        None => None,
    };
    tracing::info!(tracker_store = %store.type_name, lock_store = %locks.type_name, event_broker = ?broker.as_ref().map(|b| b.type_name.clone()), "components ready");
    let auth = Auth::new(
        args.auth_token.clone(),
        args.jwt_secret.clone(),
        &args.jwt_method,
    )?;
    // `-m` goes through the built-in `local` model source, like any other source.
    let agent = match &args.model {
        Some(path) => {
            let cfg = ComponentConfig {
                kind: Some("local".into()),
                config: serde_json::Map::from_iter([("path".to_string(), serde_json::json!(path))]),
            };
            let source = registry.model_source("local", &cfg)?;
            let answer = futures::executor::block_on(
                source.fetch(&serde_json::json!({"current_fingerprint": null, "dest_dir": ""})),
            )
            .map_err(|e| StartError::Model(format!("{}: {}", path.display(), e.message)))?;
            let file = answer
                .get("path")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            let model = crate::model::Model::load(std::path::Path::new(&file))
                .map_err(|e| StartError::Model(format!("{file}: {e}")))?;
            tracing::info!(model = %model.file_name, model_id = %model.id, "model loaded");
            Some(Arc::new(crate::agent::Agent::new(model)))
        }
        None => None,
    };
    let model_source = match &endpoints.models {
        Some(cfg) => {
            let kind = cfg.kind.clone().unwrap_or_else(|| "http".into());
            Some(registry.model_source(&kind, cfg)?)
        }
        None => None,
    };
    // `nlu:` — a section with just `url` means the HTTP connector (as in Rasa); `-u
    // project/model` selects the rasa_core protocol.
    let nlu = match &endpoints.nlu {
        Some(cfg) => {
            let kind = cfg.kind.clone().unwrap_or_else(|| "http".into());
            let mut cfg = cfg.clone();
            if let Some(model) = &args.nlu {
                cfg.config.insert("model".into(), serde_json::json!(model));
                cfg.config
                    .entry("protocol")
                    .or_insert_with(|| serde_json::json!("rasa_core"));
            }
            Some(registry.nlu_connector(&kind, &cfg)?)
        }
        None => None,
    };
    let channels = match &args.credentials {
        Some(path) => crate::channels::Channels::load(path)
            .map_err(|e| StartError::Unsupported(e.to_string()))?,
        None => crate::channels::Channels::rest_only(),
    };
    let action_server = match &endpoints.action_endpoint {
        Some(cfg) => Some(
            crate::dialogue::ActionServer::from_config(cfg)
                .map_err(|e| StartError::Unsupported(e.to_string()))?,
        ),
        None => None,
    };
    // 0 (a `RunArgs::default()`, as `colloquy shell` builds) means the default limit.
    let defaults = Limits::default();
    let or = |v: u64, d: usize| {
        if v == 0 {
            d
        } else {
            usize::try_from(v).unwrap_or(usize::MAX)
        }
    };
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_events_per_request: or(args.max_events_per_request, defaults.max_events_per_request),
        max_conversation_id_len: or(
            args.max_conversation_id_length,
            defaults.max_conversation_id_len,
        ),
        max_events_per_conversation: or(
            args.max_events_per_conversation,
            defaults.max_events_per_conversation,
        ),
        body_read_timeout: if args.body_read_timeout == 0 {
            defaults.body_read_timeout
        } else {
            Duration::from_secs(args.body_read_timeout)
        },
    };
    let mut conversations = Conversations::new(store, locks, broker, args.cache_conversations);
    conversations.max_events = limits.max_events_per_conversation;
    // Callers run this inside `block_in_place`, where blocking on the runtime is allowed.
    let capabilities =
        tokio::runtime::Handle::current().block_on(conversations.store().capabilities());
    conversations.sole_writer = capabilities.sole_writer;
    conversations.texts_in_store = capabilities.sole_writer && capabilities.immediate_reads;
    let state = Arc::new(AppState {
        conversations,
        auth,
        agent: RwLock::new(agent),
        processor: crate::dialogue::Processor {
            nlu,
            ..crate::dialogue::Processor::new(action_server)
        },
        plugin_dirs: args.plugins.plugin_dirs.clone(),
        channels,
        reminders: Default::default(),
        states: crate::http::state_cache::StateCache::new(args.cache_conversations),
        me: Default::default(),
        empty_domain: Arc::new(Domain::empty()),
        limits,
        enable_api: args.enable_api,
    });
    let _ = state.me.set(Arc::downgrade(&state));
    Ok((state, model_source))
}

/// Rasa 3.6 wraps the app in sanic-cors (flask-cors' rules) with `origins = --cors or ""`:
/// a request's `Origin` matches a configured origin compared case-insensitively, or, when the
/// configured one looks like a regular expression (`*` becomes `.*`), matched by it from the
/// start, case-insensitively. A matching origin is echoed back, also for `*` (sanic-cors sends
/// no wildcard by default), with `Vary: Origin`; a preflight gets flask-cors' method list and
/// the headers it asked for echoed (a `*` would not cover `Authorization`, so a browser could
/// not send a JWT). Without `--cors` nothing matches and no CORS header is sent.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let patterns: Vec<OriginPattern> = origins.iter().map(|o| OriginPattern::new(o)).collect();
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin
            .to_str()
            .is_ok_and(|o| patterns.iter().any(|p| p.matches(o)))
    });
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::OPTIONS,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            // tower-http's default `Vary`: Origin and the preflight's request headers.
            .allow_headers(AllowHeaders::mirror_request()),
    )
}

/// One `--cors` origin, as flask-cors reads it.
enum OriginPattern {
    Exact(String),
    Regex(regex::Regex),
}

impl OriginPattern {
    fn new(origin: &str) -> OriginPattern {
        let origin = if origin == "*" { ".*" } else { origin };
        // flask-cors' `probably_regex`.
        let regex_like = origin
            .chars()
            .any(|c| matches!(c, '*' | '\\' | ']' | '?' | '$' | '^' | '[' | '(' | ')'));
        if regex_like {
            match regex::Regex::new(&format!("^(?i:{origin})")) {
                Ok(r) => return OriginPattern::Regex(r),
                Err(e) => tracing::warn!(
                    "--cors {origin:?} is not a valid regex ({e}); compared literally"
                ),
            }
        }
        OriginPattern::Exact(origin.to_string())
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginPattern::Regex(r) => r.is_match(origin),
        }
    }
}

/// `colloquy run`.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let endpoints = load_endpoints(&args)?;
    let (state, model_source) = tokio::task::block_in_place(|| build_state(&args, &endpoints))?;
    let abandoned = crate::http::finish::Abandoned::default();
    let app = crate::http::app(state.clone(), cors_layer(&args.cors), abandoned);
    let addr = format!("{}:{}", args.interface, args.port);
    let listener = crate::http::serve::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr.clone(),
        source,
    })?;
    tracing::info!(
        "Colloquy {} serving on http://{local} (API {})",
        env!("CARGO_PKG_VERSION"),
        if args.enable_api {
            "enabled"
        } else {
            "disabled"
        }
    );
    // The API answers from now on; the first pull of a model server happens in the background
    // and `/status` says `is_ready: false` until a model is loaded.
    if let Some(source) = model_source {
        crate::models::spawn_polling(state.clone(), source, crate::models::download_dir());
    }
    // Start-up is over: its code need not stay resident (`memory.rs`).
    crate::memory::release_startup_code();
    // Tests and scripts wait for this line on stdout.
    println!("listening on {local}");
    let opts = crate::http::serve::ServeOptions {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        drain_timeout: Duration::from_secs(30),
        abandoned,
    };
    crate::http::serve::serve(listener, app, opts, shutdown_signal()).await;
    tracing::info!("shutting down: flushing the event broker");
    state.conversations.close(Duration::from_secs(10)).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `colloquy plugins`.
pub fn list_plugins(dirs: &[std::path::PathBuf]) -> String {
    let mut registry = Registry::new(dirs);
    let (entries, rejected) = registry.list();
    let mut out = crate::plugins::registry::describe(&entries, &rejected);
    out.push_str("searched: ");
    out.push_str(
        &registry
            .search_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push('\n');
    out
}

/// `colloquy plugin-test`: the contract suite; `Ok(true)` when everything passed.
pub async fn plugin_test(args: PluginTestArgs) -> Result<bool, String> {
    let kind = Kind::from_cli(&args.kind).ok_or_else(|| {
        format!(
            "--kind must be tracker-store or lock-store, not {}",
            args.kind
        )
    })?;
    let config: serde_json::Value =
        serde_json::from_str(&args.config).map_err(|e| format!("--config is not JSON: {e}"))?;
    let serde_json::Value::Object(config) = config else {
        return Err("--config must be a JSON object".into());
    };
    let cfg = ComponentConfig {
        kind: Some(args.plugin.clone()),
        config,
    };
    let mut registry = Registry::new(&args.plugins.plugin_dirs);
    let report = match kind {
        Kind::TrackerStore => {
            let store = tokio::task::block_in_place(|| registry.tracker_store(Some(&cfg)))
                .map_err(|e| e.to_string())?;
            colloquy_plugin_api::sdk::testkit::tracker_store_suite(store.raw(), &args.prefix).await
        }
        Kind::LockStore => {
            let locks = tokio::task::block_in_place(|| registry.lock_store(Some(&cfg)))
                .map_err(|e| e.to_string())?;
            colloquy_plugin_api::sdk::testkit::lock_store_suite(locks.raw(), &args.prefix).await
        }
        other => {
            return Err(format!(
                "no contract suite for {} yet; use tracker-store or lock-store",
                other.cli_name()
            ))
        }
    };
    print!("{}", report.render());
    Ok(report.passed())
}

#[cfg(test)]
mod tests {
    use super::OriginPattern;

    #[test]
    fn cors_origins_match_as_flask_cors_does() {
        let exact = OriginPattern::new("https://a.example");
        assert!(exact.matches("https://a.example"));
        assert!(exact.matches("HTTPS://A.example"));
        assert!(!exact.matches("https://b.example"));
        assert!(!exact.matches("https://a.example.evil"));
        assert!(
            !exact.matches("https://aXexample"),
            "a `.` alone is literal"
        );
        let any = OriginPattern::new("*");
        assert!(any.matches("https://whatever.example"));
        let regex = OriginPattern::new(r"https://.*\.example\.com");
        assert!(regex.matches("https://x.example.com"));
        assert!(regex.matches("HTTPS://X.EXAMPLE.COM"));
        assert!(!regex.matches("http://x.example.com"));
        assert!(
            !regex.matches("evil https://x.example.com"),
            "anchored at the start"
        );
    }
}
