//! Host-side handles around the ABI objects: every call bounded by a timeout, panics caught a
//! second time (the SDK already catches them inside the plugin), errors typed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use abi_stable::std_types::{RResult, RString, RVec};
use colloquy_plugin_api::{
    ops, ErrorKind, EventBrokerBox, EventLog, LockStoreBox, LogPosition, ModelSourceBox,
    NluConnectorBox, PReply, StoreCapabilities, TrackerStoreBox,
};
use futures::FutureExt;
use serde_json::Value;
use thiserror::Error;

/// A failed plugin call, with what was called.
#[derive(Debug, Error, Clone)]
#[error("{component}: {op} failed: {message}")]
pub struct PluginCallError {
    pub component: String,
    pub op: &'static str,
    pub kind: ErrorKind,
    pub message: String,
}

impl PluginCallError {
    /// True when the backend is unreachable or slow: the client should retry later (503).
    pub fn is_unavailable(&self) -> bool {
        self.kind.is_transient()
    }
}

async fn call<T>(
    component: &str,
    op: &'static str,
    timeout: Duration,
    reply: PReply<T>,
) -> Result<T, PluginCallError> {
    let err = |kind: ErrorKind, message: String| PluginCallError {
        component: component.to_string(),
        op,
        kind,
        message,
    };
    let outcome = match reply {
        // Most calls (the SDK's guard polls eagerly): no future, no timer.
        PReply::Ready(outcome) => Ok(Ok(outcome)),
        // The deadline runs from here.
        PReply::Pending(fut) => {
            tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await
        }
    };
    match outcome {
        Ok(Ok(RResult::ROk(v))) => Ok(v),
        Ok(Ok(RResult::RErr(e))) => Err(err(e.kind, e.message.to_string())),
        Ok(Err(_)) => Err(err(ErrorKind::PANIC, "the plugin panicked".into())),
        Err(_) => Err(err(
            ErrorKind::TIMEOUT,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    }
}

fn strings(items: Vec<String>) -> RVec<RString> {
    items.into_iter().map(RString::from).collect()
}

/// A component's health as JSON; a failed call or invalid JSON is `{"ok": false, "error"}`.
async fn health_of(component: &str, timeout: Duration, reply: PReply<RString>) -> Value {
    match call(component, "health", timeout, reply).await {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|_| {
            serde_json::json!({"ok": false, "error": format!("{component} returned invalid health JSON")})
        }),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    }
}

/// A tracker store, built in or loaded.
pub struct TrackerStoreHandle {
    pub label: String,
    pub type_name: String,
    inner: TrackerStoreBox,
    timeout: Duration,
}

impl TrackerStoreHandle {
    pub fn new(type_name: &str, inner: TrackerStoreBox, timeout: Duration) -> Self {
        TrackerStoreHandle {
            label: format!("tracker store '{type_name}'"),
            type_name: type_name.into(),
            inner,
            timeout,
        }
    }
    pub async fn load(&self, id: &str, from: u64) -> Result<Option<EventLog>, PluginCallError> {
        call(
            &self.label,
            "load",
            self.timeout,
            self.inner.load(id.into(), from),
        )
        .await
        .map(|o| o.into_option())
    }
    /// [`Self::load`] for code that cannot wait: the store's answer to its first poll. For a
    /// store that claims `immediate_reads`; any other answer is an UNAVAILABLE error.
    pub fn load_at_once(&self, id: &str, from: u64) -> Result<Option<EventLog>, PluginCallError> {
        let err = |kind: ErrorKind, message: &str| PluginCallError {
            component: self.label.clone(),
            op: "load",
            kind,
            message: message.to_string(),
        };
        // A plugin answering through the SDK replies `Ready`; one implementing the ABI by
        // hand may hand over a future that is ready when first polled.
        let polled = match self.inner.load(id.into(), from) {
            PReply::Ready(outcome) => Poll::Ready(Ok(outcome)),
            PReply::Pending(fut) => {
                let mut fut = AssertUnwindSafe(fut).catch_unwind();
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                Pin::new(&mut fut).poll(&mut cx)
            }
        };
        match polled {
            Poll::Ready(Ok(RResult::ROk(log))) => Ok(log.into_option()),
            Poll::Ready(Ok(RResult::RErr(e))) => Err(err(e.kind, e.message.as_str())),
            Poll::Ready(Err(_)) => Err(err(ErrorKind::PANIC, "the plugin panicked")),
            Poll::Pending => Err(err(
                ErrorKind::UNAVAILABLE,
                "no answer at once, although the store claims `immediate_reads`",
            )),
        }
    }
    pub async fn append(
        &self,
        id: &str,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginCallError> {
        call(
            &self.label,
            "append",
            self.timeout,
            self.inner.append(id.into(), strings(events)),
        )
        .await
    }
    pub async fn replace(
        &self,
        id: &str,
        events: Vec<String>,
    ) -> Result<LogPosition, PluginCallError> {
        call(
            &self.label,
            "replace",
            self.timeout,
            self.inner.replace(id.into(), strings(events)),
        )
        .await
    }
    pub async fn keys(&self) -> Result<Vec<String>, PluginCallError> {
        call(&self.label, "keys", self.timeout, self.inner.keys())
            .await
            .map(|v| v.into_iter().map(String::from).collect())
    }
    pub async fn delete(&self, id: &str) -> Result<bool, PluginCallError> {
        call(
            &self.label,
            "delete",
            self.timeout,
            self.inner.delete(id.into()),
        )
        .await
    }
    pub async fn health(&self) -> Value {
        health_of(&self.label, self.timeout, self.inner.health()).await
    }
    /// What the store says the host may assume ([`ops::CAPABILITIES`]). A store that does not
    /// know the op, fails, or answers something else gets the conservative defaults (logged
    /// unless the op is merely unsupported).
    pub async fn capabilities(&self) -> StoreCapabilities {
        let asked = self.inner.call(ops::CAPABILITIES.into(), RString::new());
        match call(&self.label, ops::CAPABILITIES, self.timeout, asked).await {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} answered `{}` with invalid JSON ({e}); assuming none",
                    self.label,
                    ops::CAPABILITIES
                );
                StoreCapabilities::default()
            }),
            Err(e) if e.kind == ErrorKind::UNSUPPORTED => StoreCapabilities::default(),
            Err(e) => {
                tracing::warn!("asking for capabilities: {e}; assuming none");
                StoreCapabilities::default()
            }
        }
    }
    pub async fn close(&self) -> Result<(), PluginCallError> {
        call(&self.label, "close", self.timeout, self.inner.close()).await
    }
    /// The raw ABI object (for the contract test kit).
    pub fn raw(&self) -> &TrackerStoreBox {
        &self.inner
    }
}

/// A lock store, built in or loaded.
pub struct LockStoreHandle {
    pub label: String,
    pub type_name: String,
    inner: LockStoreBox,
    timeout: Duration,
}

impl LockStoreHandle {
    pub fn new(type_name: &str, inner: LockStoreBox, timeout: Duration) -> Self {
        LockStoreHandle {
            label: format!("lock store '{type_name}'"),
            type_name: type_name.into(),
            inner,
            timeout,
        }
    }
    pub async fn acquire(
        &self,
        id: &str,
        lifetime: Duration,
        wait: Duration,
    ) -> Result<String, PluginCallError> {
        let bound = wait + self.timeout;
        call(
            &self.label,
            "acquire",
            bound,
            self.inner.acquire(
                id.into(),
                lifetime.as_millis() as u64,
                wait.as_millis() as u64,
            ),
        )
        .await
        .map(String::from)
    }
    pub async fn release(&self, id: &str, ticket: String) -> Result<(), PluginCallError> {
        call(
            &self.label,
            "release",
            self.timeout,
            self.inner.release(id.into(), ticket.into()),
        )
        .await
    }
    pub async fn health(&self) -> Value {
        health_of(&self.label, self.timeout, self.inner.health()).await
    }
    pub async fn close(&self) -> Result<(), PluginCallError> {
        call(&self.label, "close", self.timeout, self.inner.close()).await
    }
    pub fn raw(&self) -> &LockStoreBox {
        &self.inner
    }
}

/// An event broker, built in or loaded.
pub struct BrokerHandle {
    pub label: String,
    pub type_name: String,
    inner: EventBrokerBox,
    timeout: Duration,
}

impl BrokerHandle {
    pub fn new(type_name: &str, inner: EventBrokerBox, timeout: Duration) -> Self {
        BrokerHandle {
            label: format!("event broker '{type_name}'"),
            type_name: type_name.into(),
            inner,
            timeout,
        }
    }
    pub async fn publish(&self, id: &str, events: Vec<String>) -> Result<(), PluginCallError> {
        call(
            &self.label,
            "publish",
            self.timeout,
            self.inner.publish(id.into(), strings(events)),
        )
        .await
    }
    pub async fn flush(&self, timeout: Duration) -> Result<(), PluginCallError> {
        call(
            &self.label,
            "flush",
            timeout + Duration::from_secs(1),
            self.inner.flush(timeout.as_millis() as u64),
        )
        .await
    }
    pub async fn health(&self) -> Value {
        health_of(&self.label, self.timeout, self.inner.health()).await
    }
    pub async fn close(&self) -> Result<(), PluginCallError> {
        call(&self.label, "close", self.timeout, self.inner.close()).await
    }
}

/// An NLU connector, built in or loaded.
pub struct NluHandle {
    pub label: String,
    inner: NluConnectorBox,
    timeout: Duration,
}

impl NluHandle {
    pub fn new(type_name: &str, inner: NluConnectorBox, timeout: Duration) -> Self {
        NluHandle {
            label: format!("NLU connector '{type_name}'"),
            inner,
            timeout,
        }
    }
    pub async fn parse(&self, request: &Value) -> Result<Value, PluginCallError> {
        let text = call(
            &self.label,
            "parse",
            self.timeout,
            self.inner.parse(request.to_string().into()),
        )
        .await?;
        serde_json::from_str(&text).map_err(|e| PluginCallError {
            component: self.label.clone(),
            op: "parse",
            kind: ErrorKind::BACKEND,
            message: format!("invalid JSON answer: {e}"),
        })
    }
}

/// A model source, built in or loaded.
pub struct ModelSourceHandle {
    pub label: String,
    inner: ModelSourceBox,
    timeout: Duration,
}

impl ModelSourceHandle {
    pub fn new(type_name: &str, inner: ModelSourceBox, timeout: Duration) -> Self {
        ModelSourceHandle {
            label: format!("model source '{type_name}'"),
            inner,
            timeout,
        }
    }
    pub async fn fetch(&self, request: &Value) -> Result<Value, PluginCallError> {
        let text = call(
            &self.label,
            "fetch",
            self.timeout,
            self.inner.fetch(request.to_string().into()),
        )
        .await?;
        serde_json::from_str(&text).map_err(|e| PluginCallError {
            component: self.label.clone(),
            op: "fetch",
            kind: ErrorKind::BACKEND,
            message: format!("invalid JSON answer: {e}"),
        })
    }
}
