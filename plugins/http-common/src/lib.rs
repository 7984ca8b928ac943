//! The pieces of Rasa's generic endpoint config (`url`, `token`, `headers`, `params`,
//! `basic_auth`, `timeout`, `cafile`) that the HTTP plugins share, so that they validate and
//! apply those fields the same way: config errors name the key, secrets never reach logs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use colloquy_plugin_api::PluginError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, ClientBuilder, Url};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// A config error naming the key, with `{"key": …}` in its details.
pub fn key_error(key: &str, text: &str) -> PluginError {
    PluginError::config(format!("config key `{key}`: {text}"))
        .with_details(serde_json::json!({"key": key}))
}

/// `basic_auth: {username, password}`; the password is never printed.
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

/// `#[serde(deserialize_with = "scalar_string")]`: a scalar of any type as text.
pub fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.0)
}

/// A number, or a numeric string (`${VAR}` expansion yields strings); finite only.
pub fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// `#[serde(deserialize_with = "secs")]`: a number of seconds, or null.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    match number_of(&v) {
        Some(n) => Ok(Some(n)),
        None => Err(de::Error::custom(format!(
            "expected a number of seconds, got {v}"
        ))),
    }
}

/// `url`: required, http or https. `what` says what the URL points at, for the error.
pub fn parse_url(url: Option<String>, what: &str) -> Result<Url, PluginError> {
    let url = url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| key_error("url", &format!("is required ({what})")))?;
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

/// `headers`: validated names and values (a null value leaves the header out).
pub fn header_map(headers: BTreeMap<String, Scalar>) -> Result<HeaderMap, PluginError> {
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

/// A client with the request `timeout`, and the CAs of `cafile` trusted besides the system's.
pub fn client(
    builder: ClientBuilder,
    timeout: Duration,
    cafile: Option<&str>,
) -> Result<Client, PluginError> {
    let mut builder = builder.timeout(timeout);
    if let Some(path) = cafile {
        let pem = std::fs::read(path)
            .map_err(|e| key_error("cafile", &format!("cannot read `{path}`: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| key_error("cafile", &format!("`{path}` is not a PEM bundle: {e}")))?;
        if certs.is_empty() {
            return Err(key_error(
                "cafile",
                &format!("`{path}` holds no certificate"),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| PluginError::config(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers() {
        assert!(parse_url(None, "x").unwrap_err().message.contains("`url`"));
        assert!(parse_url(Some("ftp://h/x".into()), "x").is_err());
        let u = parse_url(Some("http://u:p@h:1/x?token=s".into()), "x").unwrap();
        assert_eq!(redacted_url(&u), "http://h:1/x");
        let h = header_map(BTreeMap::from([
            ("X-A".to_string(), Scalar(Some("1".into()))),
            ("X-B".to_string(), Scalar(None)),
        ]))
        .unwrap();
        assert_eq!(h.len(), 1);
        assert!(header_map(BTreeMap::from([(
            "bad header".to_string(),
            Scalar(Some("1".into()))
        )]))
        .is_err());
    }
}
