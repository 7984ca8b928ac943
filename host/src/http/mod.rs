//! The HTTP API (axum): routes, the shared state, request parsing helpers.

pub mod auth;
pub mod body;
pub mod body_timeout;
pub mod conversations;
pub mod dialogue;
pub mod dispatch;
pub mod error;
pub mod finish;
pub mod meta;
pub mod model;
pub mod openapi;
pub mod query;
pub mod serve;
pub mod state_cache;

use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use error::ApiError;

use crate::agent::Agent;
use crate::conversations::Conversations;
use crate::domain::Domain;

/// Limits on what a request may contain.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    pub max_conversation_id_len: usize,
    /// Appends that would take a conversation beyond this many events are refused (400).
    pub max_events_per_conversation: usize,
    /// Longest pause between two chunks of a request body before the request fails (408).
    pub body_read_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_conversation_id_len: 1024,
            max_events_per_conversation: 100_000,
            body_read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

pub struct AppState {
    pub processor: crate::dialogue::Processor,
    /// Tracker states between requests (see `state_cache.rs`).
    pub states: state_cache::StateCache,
    pub channels: crate::channels::Channels,
    pub reminders: crate::dialogue::reminders::Scheduler,
    /// Set once at start-up, for background tasks (reminders) that need the state.
    pub me: std::sync::OnceLock<std::sync::Weak<AppState>>,
    /// `--plugin-dir`s, for components created at run time (`PUT /model` with a model server).
    pub plugin_dirs: Vec<std::path::PathBuf>,
    pub conversations: Conversations,
    pub auth: auth::Auth,
    pub agent: RwLock<Option<Arc<Agent>>>,
    pub empty_domain: Arc<Domain>,
    pub limits: Limits,
    pub enable_api: bool,
}

impl AppState {
    pub fn agent(&self) -> Option<Arc<Agent>> {
        self.agent.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The loaded model, or 409 Conflict as Rasa 3.6 answers without one.
    pub fn require_agent(&self) -> Result<Arc<Agent>, ApiError> {
        self.agent().ok_or_else(|| ApiError::conflict("No agent loaded. To continue processing, a model of a trained agent needs to be loaded."))
    }

    pub fn self_ref(&self) -> std::sync::Weak<AppState> {
        self.me.get().cloned().unwrap_or_default()
    }

    /// The domain in force: the model's, or the empty one.
    pub fn domain(&self) -> Arc<Domain> {
        self.agent()
            .map(|a| a.domain.clone())
            .unwrap_or_else(|| self.empty_domain.clone())
    }
}

pub type SharedState = Arc<AppState>;

/// Every `(method, path)` the router can serve (with all channels and the API enabled), in the
/// OpenAPI document's spelling. `openapi.rs` tests it against `host/openapi.yaml` and against
/// the router's route registrations below; the black-box tests probe each one on a live server.
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut r = vec![
        (Method::GET, "/"),
        (Method::GET, "/version"),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/webhooks/rest/"),
        (Method::POST, "/webhooks/rest/webhook"),
        (Method::GET, "/webhooks/callback/"),
        (Method::POST, "/webhooks/callback/webhook"),
        (Method::GET, "/status"),
        (Method::GET, "/domain"),
        (Method::GET, "/conversations"),
        (Method::POST, "/model/parse"),
        (Method::PUT, "/model"),
        (Method::DELETE, "/model"),
        (Method::POST, "/model"),
        (Method::POST, "/model/train"),
        (Method::POST, "/parse"),
        (Method::POST, "/model/predict"),
        (Method::POST, "/predict"),
    ];
    // `/conversations/{*rest}`: dispatched by suffix in conversations.rs.
    r.extend([
        (Method::GET, "/conversations/{conversation_id}/tracker"),
        (
            Method::POST,
            "/conversations/{conversation_id}/tracker/events",
        ),
        (
            Method::PUT,
            "/conversations/{conversation_id}/tracker/events",
        ),
        (Method::GET, "/conversations/{conversation_id}/story"),
        (Method::POST, "/conversations/{conversation_id}/messages"),
        (Method::POST, "/conversations/{conversation_id}/predict"),
        (Method::POST, "/conversations/{conversation_id}/execute"),
        (
            Method::POST,
            "/conversations/{conversation_id}/trigger_intent",
        ),
        (Method::GET, "/conversations/{conversation_id}/respond"),
        (Method::POST, "/conversations/{conversation_id}/respond"),
    ]);
    r
}

/// Builds the router. Without `enable_api` only `/`, `/version` and channels are served.
pub fn router(state: SharedState) -> Router {
    let mut app = Router::new()
        .route("/", get(meta::root))
        .route("/version", get(meta::version))
        .route("/openapi.json", get(openapi::openapi_json));
    if state.channels.rest {
        app = app
            .route("/webhooks/rest/", get(crate::channels::rest::health))
            .route(
                "/webhooks/rest/webhook",
                axum::routing::post(crate::channels::rest::webhook),
            );
    }
    if state.channels.callback.is_some() {
        app = app
            .route(
                "/webhooks/callback/",
                get(crate::channels::callback::health),
            )
            .route(
                "/webhooks/callback/webhook",
                axum::routing::post(crate::channels::callback::webhook),
            );
    }
    if state.enable_api {
        app = app
            .route("/status", get(meta::status))
            .route("/domain", get(meta::domain))
            .route("/conversations", get(conversations::list))
            .route("/model/parse", axum::routing::post(model::parse))
            .route(
                "/model",
                axum::routing::put(model::replace_model)
                    .delete(model::unload_model)
                    .post(model::upload_model),
            )
            .route("/model/train", axum::routing::post(model::train))
            .route("/parse", axum::routing::post(model::parse_legacy))
            .route("/model/predict", axum::routing::post(model::predict))
            .route("/predict", axum::routing::post(model::predict_legacy));
        // `/conversations/…` is answered ahead of the router: see `dispatch.rs`.
    }
    app.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The whole service: what every request goes through, outermost first: running to its end
/// even if the client hangs up (counted in `abandoned`, see [`finish`]), CORS (when
/// configured), Rasa's error body for axum's rejections, the body's stall timeout; then
/// `/conversations/…` and `POST /webhooks/rest/webhook` are answered by [`dispatch`],
/// everything else by [`router`] under the body size limit (the two answered ahead of it
/// apply the limit themselves, see `body.rs`). The layers
/// wrap the router once rather than each route (`Router::layer`), which would clone and box
/// per route and request.
pub fn app(
    state: SharedState,
    cors: Option<tower_http::cors::CorsLayer>,
    abandoned: finish::Abandoned,
) -> impl tower::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let limited_router = tower::ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .service(router(state.clone()));
    tower::ServiceBuilder::new()
        .layer(finish::FinishLayer::new(abandoned))
        .option_layer(cors)
        .layer(error::RasaErrorsLayer)
        .layer(body_timeout::BodyTimeoutLayer::new(
            state.limits.body_read_timeout,
        ))
        .service(dispatch::Dispatch::new(state, limited_router))
}

async fn fallback(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    not_found(&method, &uri)
}

/// A path no route serves.
fn not_found(method: &Method, uri: &axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("Requested URL {} {} not found", method, uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("Method {} not allowed for URL {}", method, uri.path()),
    )
}
