//! The one error type that crosses the boundary.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, as a transparent integer so that new kinds can be added without an ABI
/// change. The host maps kinds to HTTP statuses: `UNAVAILABLE`, `CONNECTION` and `TIMEOUT` →
/// 503, `INVALID_INPUT` → 400, `NOT_FOUND` → 404, everything else → 500.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// The plugin's configuration is invalid (unknown key, wrong type, bad value).
    pub const CONFIG: ErrorKind = ErrorKind(1);
    /// The backend could not be reached (connection refused, reset, DNS).
    pub const CONNECTION: ErrorKind = ErrorKind(2);
    /// The backend did not answer in time.
    pub const TIMEOUT: ErrorKind = ErrorKind(3);
    /// The requested item does not exist.
    pub const NOT_FOUND: ErrorKind = ErrorKind(4);
    /// A concurrent modification or an already held resource.
    pub const CONFLICT: ErrorKind = ErrorKind(5);
    /// The backend answered with an error.
    pub const BACKEND: ErrorKind = ErrorKind(6);
    /// The plugin panicked; the call failed, the process goes on.
    pub const PANIC: ErrorKind = ErrorKind(7);
    /// The operation is not implemented by this plugin.
    pub const UNSUPPORTED: ErrorKind = ErrorKind(8);
    /// The caller's input was invalid.
    pub const INVALID_INPUT: ErrorKind = ErrorKind(9);
    /// The backend is temporarily unable to serve (e.g. a full buffer).
    pub const UNAVAILABLE: ErrorKind = ErrorKind(10);

    pub fn name(self) -> &'static str {
        match self {
            Self::CONFIG => "config",
            Self::CONNECTION => "connection",
            Self::TIMEOUT => "timeout",
            Self::NOT_FOUND => "not found",
            Self::CONFLICT => "conflict",
            Self::BACKEND => "backend",
            Self::PANIC => "panic",
            Self::UNSUPPORTED => "unsupported",
            Self::INVALID_INPUT => "invalid input",
            Self::UNAVAILABLE => "unavailable",
            _ => "other",
        }
    }

    /// True for failures where retrying later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::CONNECTION | Self::TIMEOUT | Self::UNAVAILABLE)
    }
}

/// An error returned by a plugin. The fields are frozen: extend `details_json` instead.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: RString,
    /// A JSON object with machine-readable details, `{}` when there are none.
    pub details_json: RString,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
            details_json: RString::from("{}"),
        }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details_json = RString::from(details.to_string());
        self
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CONFIG, message)
    }
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CONNECTION, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TIMEOUT, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NOT_FOUND, message)
    }
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BACKEND, message)
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_INPUT, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNAVAILABLE, message)
    }
    pub fn unsupported(op: &str) -> Self {
        Self::new(
            ErrorKind::UNSUPPORTED,
            format!("operation `{op}` is not supported by this plugin"),
        )
    }

    /// Builds the error for a caught panic payload.
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let text = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        };
        Self::new(ErrorKind::PANIC, format!("plugin panicked: {text}"))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for PluginError {}
