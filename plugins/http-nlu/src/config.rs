//! Configuration: the `nlu:` section of the endpoints YAML.
//!
//! The section reaches us as JSON after `${VAR}` expansion, which may turn numbers into
//! strings; `timeout` therefore also accepts its string spelling, and header / parameter values
//! may be any scalar. Unknown keys are refused, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use colloquy_plugin_api::{sdk::parse_config, PluginError};
use colloquy_plugin_http_common::{header_map, parse_url, scalar_string, secs};
pub use colloquy_plugin_http_common::{key_error, redacted_url, BasicAuth, Scalar};
use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::Deserialize;

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
        let url = parse_url(raw.url, "the NLU server's base URL")?;
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
