//! Configuration: the `models:` section of the endpoints YAML (Rasa's `EndpointConfig` keys).
//!
//! The section reaches us as JSON after `${VAR}` expansion, which may turn numbers into
//! strings; numeric keys therefore also accept their string spelling (`timeout: "30"`), and
//! header / parameter values may be any scalar. Unknown keys are refused, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use colloquy_plugin_api::{sdk::parse_config, PluginError};
use colloquy_plugin_http_common::{header_map, number_of, parse_url, scalar_string, secs};
pub use colloquy_plugin_http_common::{key_error, redacted_url, BasicAuth, Scalar};
use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Default `wait_time_between_pulls`, seconds (Rasa 3).
pub const DEFAULT_WAIT_SECS: f64 = 100.0;
/// Default request timeout, seconds (Rasa's `DEFAULT_REQUEST_TIMEOUT`).
pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;
/// Default download limit: 500 MiB.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 500 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: Option<String>,
    /// Missing → default; `null` → pull once (kept apart from "missing" by `double_option`).
    #[serde(default, deserialize_with = "double_option_secs")]
    wait_time_between_pulls: Option<Option<f64>>,
    #[serde(default, deserialize_with = "scalar_string")]
    token: Option<String>,
    token_name: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, Scalar>>,
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    params: Option<BTreeMap<String, Scalar>>,
    #[serde(default, deserialize_with = "secs")]
    timeout: Option<f64>,
    #[serde(default, deserialize_with = "bytes")]
    max_size_bytes: Option<u64>,
    cafile: Option<String>,
}

/// The validated configuration of the HTTP model source.
#[derive(Clone)]
pub struct ModelSourceConfig {
    pub url: Url,
    /// `None`: pull once.
    pub wait_time_between_pulls: Option<Duration>,
    pub token: Option<String>,
    pub token_name: String,
    pub headers: HeaderMap,
    pub basic_auth: Option<BasicAuth>,
    /// Query parameters, in key order; the token is added after them.
    pub params: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_size_bytes: u64,
    /// PEM bundle of extra trusted CAs.
    pub cafile: Option<String>,
}

impl fmt::Debug for ModelSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token, the password and header values (often credentials) are never printed.
        f.debug_struct("ModelSourceConfig")
            .field("url", &redacted_url(&self.url))
            .field("wait_time_between_pulls", &self.wait_time_between_pulls)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_name", &self.token_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("basic_auth", &self.basic_auth)
            .field(
                "params",
                &self.params.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("max_size_bytes", &self.max_size_bytes)
            .field("cafile", &self.cafile)
            .finish()
    }
}

impl ModelSourceConfig {
    /// Parses the section's JSON (what the host hands to the constructor).
    pub fn parse(json: &str) -> Result<Self, PluginError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let raw: Raw = parse_config(json)?;
        let url = parse_url(raw.url, "the model server's URL")?;
        let wait = match raw.wait_time_between_pulls {
            None => Some(DEFAULT_WAIT_SECS),
            Some(v) => v,
        };
        let wait_time_between_pulls = wait
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .filter(|d| !d.is_zero());
        let token_name = raw.token_name.unwrap_or_else(|| "token".to_string());
        if token_name.is_empty() {
            return Err(key_error("token_name", "must not be empty"));
        }
        let headers = header_map(raw.headers.unwrap_or_default())?;
        let params = raw
            .params
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.0.map(|v| (k, v)))
            .collect();
        let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout <= 0.0 {
            return Err(key_error("timeout", "must be a positive number of seconds"));
        }
        let max_size_bytes = raw.max_size_bytes.unwrap_or(DEFAULT_MAX_SIZE_BYTES);
        if max_size_bytes == 0 {
            return Err(key_error("max_size_bytes", "must be positive"));
        }
        Ok(ModelSourceConfig {
            url,
            wait_time_between_pulls,
            token: raw.token,
            token_name,
            headers,
            basic_auth: raw.basic_auth,
            params,
            timeout: Duration::from_secs_f64(timeout),
            max_size_bytes,
            cafile: raw.cafile,
        })
    }

    /// The poll interval in milliseconds, `None` for pull-once.
    pub fn next_poll_ms(&self) -> Option<u64> {
        self.wait_time_between_pulls
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
    }
}

fn double_option_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(Some(None)),
        Value::String(s) if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("none") => {
            Ok(Some(None))
        }
        _ => match number_of(&v) {
            Some(n) if n >= 0.0 => Ok(Some(Some(n))),
            _ => Err(de::Error::custom(format!(
                "expected a number of seconds (0 or null: pull once), got {v}"
            ))),
        },
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
        Value::String(s) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
        _ => Err(de::Error::custom(format!(
            "expected a number of bytes, got {v}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c =
            ModelSourceConfig::parse(r#"{"url": "http://localhost:8080/models/latest"}"#).unwrap();
        assert_eq!(c.wait_time_between_pulls, Some(Duration::from_secs(100)));
        assert_eq!(c.next_poll_ms(), Some(100_000));
        assert_eq!(c.token_name, "token");
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(c.max_size_bytes, 500 * 1024 * 1024);
        assert!(c.headers.is_empty() && c.params.is_empty() && c.token.is_none());
    }

    #[test]
    fn pull_once_spellings() {
        for w in ["null", "0", "\"0\"", "\"None\"", "0.0"] {
            let c = ModelSourceConfig::parse(&format!(
                r#"{{"url": "http://h/m", "wait_time_between_pulls": {w}}}"#
            ))
            .unwrap();
            assert_eq!(c.next_poll_ms(), None, "{w}");
        }
        let c =
            ModelSourceConfig::parse(r#"{"url": "http://h/m", "wait_time_between_pulls": "5"}"#)
                .unwrap();
        assert_eq!(c.next_poll_ms(), Some(5000));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{}"#, "url"),
            (r#"{"url": "ftp://h/m"}"#, "url"),
            (r#"{"url": "not a url"}"#, "url"),
            (
                r#"{"url": "http://h", "wait_time_between_pulls": -1}"#,
                "wait_time_between_pulls",
            ),
            (
                r#"{"url": "http://h", "wait_time_between_pulls": "soon"}"#,
                "wait_time_between_pulls",
            ),
            (r#"{"url": "http://h", "timeout": 0}"#, "timeout"),
            (
                r#"{"url": "http://h", "max_size_bytes": -5}"#,
                "max_size_bytes",
            ),
            (
                r#"{"url": "http://h", "headers": {"bad name": "x"}}"#,
                "headers.bad name",
            ),
            (
                r#"{"url": "http://h", "headers": {"X": "a\nb"}}"#,
                "headers.X",
            ),
            (
                r#"{"url": "http://h", "basic_auth": {"user": "x"}}"#,
                "basic_auth",
            ),
            (r#"{"url": "http://h", "wait_time": 3}"#, "wait_time"),
            (r#"{"url": "http://h", "params": {"a": [1]}}"#, "params.a"),
        ];
        for (json, key) in cases {
            let e = ModelSourceConfig::parse(json).unwrap_err();
            assert_eq!(e.kind, colloquy_plugin_api::ErrorKind::CONFIG);
            assert!(e.message.contains(key), "{json}: {}", e.message);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = ModelSourceConfig::parse(
            r#"{"url": "http://u:pw@h/m?x=1", "token": "s3cret", "headers": {"Authorization": "Bearer s3cret"},
                "basic_auth": {"username": "me", "password": "s3cret"}}"#,
        )
        .unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
    }
}
