//! Configuration: the `nlu:` section of the endpoints YAML.
//!
//! The section reaches us as JSON after `${VAR}` expansion, which may turn numbers into
//! strings; `timeout` therefore also accepts its string spelling, and header / parameter values
//! may be any scalar. Unknown keys are refused, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use colloquy_plugin_api::{sdk::parse_config, PluginError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Default request timeout, seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

/// Which NLU server API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Rasa 3: `POST {url}/model/parse` with a JSON body.
    Rasa,
    /// rasa_core 0.x / Rasa NLU 0.x: `GET {url}/parse?q=…&project=…&model=…`.
    RasaCore,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    token: Option<String>,
    token_name: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    params: Option<BTreeMap<String, Scalar>>,
    basic_auth: Option<BasicAuth>,
    #[serde(default, deserialize_with = "secs")]
    timeout: Option<f64>,
    protocol: Option<Protocol>,
    #[serde(default, deserialize_with = "scalar_string")]
    model: Option<String>,
    cafile: Option<String>,
}

#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A header or query value: any YAML scalar, sent as its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Scalar(None)),
            Value::String(s) => Ok(Scalar(Some(s))),
            Value::Bool(b) => Ok(Scalar(Some(b.to_string()))),
            Value::Number(n) => Ok(Scalar(Some(n.to_string()))),
            other => Err(de::Error::custom(format!(
                "expected a string, number or boolean, got {other}"
            ))),
        }
    }
}

/// The validated configuration of the HTTP NLU connector.
#[derive(Clone)]
pub struct NluConfig {
    pub url: Url,
    pub token: Option<String>,
    pub token_name: String,
    pub headers: HeaderMap,
    /// Extra query parameters, in key order.
    pub params: Vec<(String, String)>,
    pub basic_auth: Option<BasicAuth>,
    pub timeout: Duration,
    pub protocol: Protocol,
    /// `project/model` (rasa_core protocol).
    pub model: Option<String>,
    pub cafile: Option<String>,
}

impl fmt::Debug for NluConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token, the password and header values (often credentials) are never printed.
        f.debug_struct("NluConfig")
            .field("url", &redacted_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_name", &self.token_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field(
                "params",
                &self.params.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("basic_auth", &self.basic_auth)
            .field("timeout", &self.timeout)
            .field("protocol", &self.protocol)
            .field("model", &self.model)
            .field("cafile", &self.cafile)
            .finish()
    }
}

impl NluConfig {
    /// Parses the section's JSON (what the host hands to the constructor).
    pub fn parse(json: &str) -> Result<Self, PluginError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let raw: Raw = parse_config(json)?;
        let url = parse_url(raw.url)?;
        let token_name = raw.token_name.unwrap_or_else(|| "token".to_string());
        if token_name.is_empty() {
            return Err(key_error("token_name", "must not be empty"));
        }
        let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout <= 0.0 {
            return Err(key_error("timeout", "must be a positive number of seconds"));
        }
        let model = raw.model.filter(|m| !m.is_empty());
        // As in rasa_core: naming a model (`-u project/model`) means the 0.x protocol.
        let protocol = raw.protocol.unwrap_or(if model.is_some() {
            Protocol::RasaCore
        } else {
            Protocol::Rasa
        });
        Ok(NluConfig {
            url,
            token: raw.token,
            token_name,
            headers: header_map(raw.headers.unwrap_or_default())?,
            params: raw
                .params
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.0.map(|v| (k, v)))
                .collect(),
            basic_auth: raw.basic_auth,
            timeout: Duration::from_secs_f64(timeout),
            protocol,
            model,
            cafile: raw.cafile,
        })
    }
}

pub(crate) fn key_error(key: &str, text: &str) -> PluginError {
    PluginError::config(format!("config key `{key}`: {text}"))
        .with_details(serde_json::json!({"key": key}))
}

fn parse_url(url: Option<String>) -> Result<Url, PluginError> {
    let url = url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| key_error("url", "is required (the NLU server's base URL)"))?;
    let parsed = Url::parse(url.trim())
        .map_err(|e| key_error("url", &format!("`{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(key_error(
            "url",
            &format!(
                "`{}` must be an http:// or https:// URL",
                redacted_url(&parsed)
            ),
        ));
    }
    Ok(parsed)
}

/// The URL without user info or query, for logs and errors.
pub fn redacted_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

fn header_map(headers: BTreeMap<String, Scalar>) -> Result<HeaderMap, PluginError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = format!("headers.{name}");
        let Some(value) = value.0 else { continue };
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| key_error(&key, "is not a valid HTTP header name"))?;
        let v = HeaderValue::from_str(&value)
            .map_err(|_| key_error(&key, "is not a valid HTTP header value"))?;
        map.insert(n, v);
    }
    Ok(map)
}

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    let n = match &v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n.filter(|f| f.is_finite()) {
        Some(n) => Ok(Some(n)),
        None => Err(de::Error::custom(format!(
            "expected a number of seconds, got {v}"
        ))),
    }
}

fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_protocol_choice() {
        let c = NluConfig::parse(r#"{"url": "http://localhost:5006"}"#).unwrap();
        assert_eq!(c.protocol, Protocol::Rasa);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.token_name, "token");
        let c = NluConfig::parse(r#"{"url": "http://h", "model": "default/current"}"#).unwrap();
        assert_eq!(c.protocol, Protocol::RasaCore, "a model implies rasa_core");
        let c =
            NluConfig::parse(r#"{"url": "http://h", "model": "p/m", "protocol": "rasa"}"#).unwrap();
        assert_eq!(c.protocol, Protocol::Rasa, "an explicit protocol wins");
        let c =
            NluConfig::parse(r#"{"url": "http://h", "protocol": "rasa_core", "timeout": "2.5"}"#)
                .unwrap();
        assert_eq!(c.protocol, Protocol::RasaCore);
        assert_eq!(c.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{}"#, "url"),
            (r#"{"url": "ftp://h"}"#, "url"),
            (r#"{"url": "http://h", "protocol": "rasa2"}"#, "protocol"),
            (r#"{"url": "http://h", "timeout": 0}"#, "timeout"),
            (r#"{"url": "http://h", "timeout": "soon"}"#, "timeout"),
            (
                r#"{"url": "http://h", "headers": {"bad name": "x"}}"#,
                "headers.bad name",
            ),
            (r#"{"url": "http://h", "token_name": ""}"#, "token_name"),
            (r#"{"url": "http://h", "tokn": "x"}"#, "tokn"),
        ];
        for (json, key) in cases {
            let e = NluConfig::parse(json).unwrap_err();
            assert_eq!(e.kind, colloquy_plugin_api::ErrorKind::CONFIG);
            assert!(e.message.contains(key), "{json}: {}", e.message);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = NluConfig::parse(
            r#"{"url": "http://u:pw@h/?x=1", "token": "s3cret", "headers": {"Authorization": "s3cret"}}"#,
        )
        .unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
    }
}
