//! Rasa's error body, and the one place where internal errors become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::conversations::ConversationError;
use crate::engine::EventError;
use crate::plugins::PluginCallError;

/// The Rasa version whose wire format Colloquy speaks (decisions §1).
pub const RASA_VERSION: &str = "3.6.21";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// Boxed to keep `Result<_, ApiError>` small on the happy path.
    pub details: Box<Value>,
    pub help: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason,
            message: message.into(),
            details: Box::new(json!({})),
            help: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    /// A bad query parameter or body field, with Rasa's `details`.
    pub fn bad_parameter(message: impl Into<String>, parameter: &str, location: &str) -> ApiError {
        let mut e = ApiError::bad_request(message);
        e.details = Box::new(json!({"parameter": parameter, "in": location}));
        e
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not found", message)
    }
    pub fn conversation_not_found() -> ApiError {
        ApiError::not_found("Conversation ID not found.")
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Conflict", message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }
    pub fn internal(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, reason, message)
    }
    pub fn body(&self) -> Value {
        json!({
            "version": RASA_VERSION,
            "status": "failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "help": self.help,
            "code": self.status.as_u16(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                reason = self.reason,
                "{}",
                self.message
            );
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Gives axum's own rejections Rasa's error body ([`rasa_error_body`]) around the whole app.
///
/// A hand-written layer rather than `axum::middleware::map_response` on the router: that
/// one wraps every route separately and boxes each request's future, ~0.2 µs a request;
/// here only an error answer that needs rewriting pays for a boxed future.
#[derive(Clone, Copy, Default)]
pub struct RasaErrorsLayer;

impl<S> tower::Layer<S> for RasaErrorsLayer {
    type Service = RasaErrors<S>;
    fn layer(&self, inner: S) -> RasaErrors<S> {
        RasaErrors { inner }
    }
}

#[derive(Clone)]
pub struct RasaErrors<S> {
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for RasaErrors<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RasaErrorsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        RasaErrorsFuture::Inner {
            future: self.inner.call(request),
        }
    }
}

type Rewrite = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

pin_project_lite::pin_project! {
    #[project = RasaErrorsProj]
    pub enum RasaErrorsFuture<F> {
        Inner { #[pin] future: F },
        Rewriting { rewrite: Rewrite },
    }
}

impl<F, E> std::future::Future for RasaErrorsFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        loop {
            match self.as_mut().project() {
                RasaErrorsProj::Inner { future } => match std::task::ready!(future.poll(cx)) {
                    Ok(response) if needs_rasa_body(&response) => {
                        self.set(RasaErrorsFuture::Rewriting {
                            rewrite: Box::pin(rasa_error_body(response)),
                        });
                    }
                    other => return Poll::Ready(other),
                },
                RasaErrorsProj::Rewriting { rewrite } => {
                    return rewrite.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// An error status whose body is not JSON (Colloquy's own errors always are).
fn needs_rasa_body(response: &Response) -> bool {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (status.is_client_error() || status.is_server_error()) && !is_json
}

/// The rewrite [`RasaErrors`] applies: an error answer that is not already Rasa's error body
/// (axum's own rejections: body too large, a body that could not be read, a path that is not
/// UTF-8, a bad multipart body) gets it, with the original text as the message.
/// Only called for a response [`needs_rasa_body`] picked.
async fn rasa_error_body(response: Response) -> Response {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // A body stalled beyond `--body-read-timeout` (tower-http's TimeoutBody).
    let timed_out = text.contains("timed out") || text.contains("designated timeout");
    let (status, reason) = match status {
        _ if timed_out => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"),
        StatusCode::BAD_REQUEST => (status, "BadRequest"),
        StatusCode::PAYLOAD_TOO_LARGE => (status, "PayloadTooLarge"),
        StatusCode::REQUEST_TIMEOUT => (status, "RequestTimeout"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "UnsupportedMediaType"),
        StatusCode::NOT_FOUND => (status, "NotFound"),
        StatusCode::METHOD_NOT_ALLOWED => (status, "MethodNotAllowed"),
        StatusCode::SERVICE_UNAVAILABLE => (status, "ServiceUnavailable"),
        s if s.is_server_error() => (s, "ServerError"),
        s => (s, "BadRequest"),
    };
    let message = if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Request failed")
            .to_string()
    } else {
        text
    };
    ApiError::new(status, reason, message).into_response()
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> ApiError {
        ApiError::bad_parameter(
            format!("Failed to validate the events format. For more information about the format visit the docs. Error: {e}"),
            "",
            "body",
        )
    }
}

impl From<PluginCallError> for ApiError {
    fn from(e: PluginCallError) -> ApiError {
        use colloquy_plugin_api::ErrorKind;
        match e.kind {
            k if k.is_transient() => ApiError::unavailable(e.to_string()),
            ErrorKind::INVALID_INPUT => ApiError::bad_request(e.to_string()),
            ErrorKind::NOT_FOUND => ApiError::not_found(e.to_string()),
            _ => ApiError::internal("PluginError", e.to_string()),
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> ApiError {
        match e {
            ConversationError::Store(p) | ConversationError::Lock(p) => {
                let mut api: ApiError = p.into();
                if api.status == StatusCode::INTERNAL_SERVER_ERROR {
                    api.reason = "ConversationError";
                }
                api
            }
            ConversationError::TooManyEvents { .. } => {
                ApiError::bad_parameter(e.to_string(), "", "body")
            }
            ConversationError::Corrupt { .. } => {
                ApiError::internal("ConversationError", e.to_string())
            }
            ConversationError::Changed { .. } => ApiError::unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    /// What the layer makes of `answer` from the service it wraps.
    async fn through_layer(answer: Response) -> (StatusCode, String, Vec<u8>) {
        let answer = std::sync::Mutex::new(Some(answer));
        let inner = tower::service_fn(move |_: axum::http::Request<Body>| {
            let r = answer.lock().unwrap().take().unwrap();
            async move { Ok::<_, std::convert::Infallible>(r) }
        });
        let response = RasaErrorsLayer
            .layer(inner)
            .oneshot(axum::http::Request::new(Body::empty()))
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn a_plain_text_rejection_gets_rasas_error_body() {
        let rejection = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
        let (status, content_type, body) = through_layer(rejection).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["reason"], "PayloadTooLarge");
        assert_eq!(body["message"], "length limit exceeded");
        assert_eq!(body["code"], 413);
        assert_eq!(body["version"], RASA_VERSION);
    }

    #[tokio::test]
    async fn successes_and_rasa_errors_pass_unchanged() {
        let ok = (StatusCode::OK, "plain").into_response();
        assert_eq!(
            through_layer(ok).await,
            (
                StatusCode::OK,
                "text/plain; charset=utf-8".to_string(),
                b"plain".to_vec()
            )
        );
        let own = ApiError::bad_parameter("nope", "x", "query");
        let expected = serde_json::to_vec(&own.body()).unwrap();
        let (status, _, body) = through_layer(own.into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, expected);
    }
}
