//! The `event_broker:` section for `type: kafka`, with Rasa's field names and defaults.
//!
//! Values may arrive as strings because `${VAR}` expansion always yields strings, so booleans
//! and integers accept their string spellings too. Unknown keys are errors (Rasa ignores
//! them, which hides typos such as `partition_key`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use colloquy_plugin_api::{sdk::parse_config, PluginError};
use rdkafka::ClientConfig;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Rasa's default topic.
pub const DEFAULT_TOPIC: &str = "rasa_core_events";
/// librdkafka's own default for `queue.buffering.max.messages`.
pub const DEFAULT_QUEUE_SIZE: u64 = 100_000;
/// librdkafka's upper bound for `queue.buffering.max.messages`.
const MAX_QUEUE_SIZE: u64 = i32::MAX as u64;
/// How long `close()` waits for outstanding deliveries.
pub const DEFAULT_CLOSE_TIMEOUT_MS: u64 = 10_000;
/// How long a connected producer may deliver nothing before it is replaced.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 15_000;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: "host:port", "h1:9092,h2:9092" or a list of "host:port".
    #[serde(deserialize_with = "servers")]
    pub url: String,
    #[serde(default = "default_topic", deserialize_with = "non_empty_string")]
    pub topic: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub partition_by_sender: bool,
    #[serde(default, deserialize_with = "optional_parsed")]
    pub security_protocol: Option<SecurityProtocol>,
    #[serde(default, deserialize_with = "optional_parsed")]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<String>,
    #[serde(default)]
    pub ssl_cafile: Option<String>,
    #[serde(default)]
    pub ssl_certfile: Option<String>,
    #[serde(default)]
    pub ssl_keyfile: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_bool")]
    pub ssl_check_hostname: Option<bool>,
    /// The bound on events held for delivery (queued + in flight).
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub queue_size: Option<u64>,
    /// How long `close()` waits for outstanding deliveries (Colloquy addition).
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub close_timeout_ms: Option<u64>,
    /// How long the producer may make no progress while connected before it is replaced
    /// (Colloquy addition; see producer.rs).
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub stall_timeout_ms: Option<u64>,
    /// Raw librdkafka properties, applied last (they override everything above).
    #[serde(default, deserialize_with = "raw_properties")]
    pub librdkafka: BTreeMap<String, String>,
    /// Which producer sends the events (Colloquy addition): `auto` (default), `native` or
    /// `librdkafka`.
    #[serde(default, deserialize_with = "optional_parsed")]
    pub client: Option<ClientChoice>,
}

/// The producer implementation. `native` covers PLAINTEXT and SASL_PLAINTEXT with PLAIN or
/// SCRAM, without raw `librdkafka` properties; `auto` takes it for PLAINTEXT and librdkafka
/// otherwise (see [`KafkaConfig::uses_native`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientChoice {
    #[default]
    Auto,
    Native,
    Librdkafka,
}

impl FromStr for ClientChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "librdkafka" => Ok(Self::Librdkafka),
            _ => Err(format!(
                "invalid client {s:?}; expected one of auto, native, librdkafka"
            )),
        }
    }
}

fn default_topic() -> String {
    DEFAULT_TOPIC.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
    fn is_ssl(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Rasa upper-cases the value before using it.
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "invalid security protocol {s:?}; expected one of PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    Gssapi,
    OauthBearer,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::Gssapi => "GSSAPI",
            Self::OauthBearer => "OAUTHBEARER",
        }
    }
    /// Mechanisms that authenticate with `sasl_username`/`sasl_password`.
    fn needs_credentials(self) -> bool {
        matches!(self, Self::Plain | Self::ScramSha256 | Self::ScramSha512)
    }
}

impl FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            "GSSAPI" => Ok(Self::Gssapi),
            "OAUTHBEARER" => Ok(Self::OauthBearer),
            _ => Err(format!(
                "invalid SASL mechanism {s:?}; expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI, OAUTHBEARER"
            )),
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl KafkaConfig {
    /// Parses and validates the section (the `type` key is removed by the host).
    pub fn from_json(config_json: &str) -> Result<Self, PluginError> {
        let config: KafkaConfig = parse_config(config_json)?;
        config.validate()?;
        Ok(config)
    }

    /// `PLAINTEXT`, or `SASL_PLAINTEXT` when credentials are given (decisions.md §2: Rasa's
    /// unconditional `SASL_PLAINTEXT` default breaks every plain local setup).
    pub fn protocol(&self) -> SecurityProtocol {
        self.security_protocol
            .unwrap_or(if self.sasl_username.is_some() {
                SecurityProtocol::SaslPlaintext
            } else {
                SecurityProtocol::Plaintext
            })
    }

    pub fn mechanism(&self) -> SaslMechanism {
        self.sasl_mechanism.unwrap_or(SaslMechanism::Plain)
    }

    pub fn queue_size(&self) -> u64 {
        self.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE)
    }

    pub fn close_timeout_ms(&self) -> u64 {
        self.close_timeout_ms.unwrap_or(DEFAULT_CLOSE_TIMEOUT_MS)
    }

    pub fn stall_timeout_ms(&self) -> u64 {
        self.stall_timeout_ms.unwrap_or(DEFAULT_STALL_TIMEOUT_MS)
    }

    /// The producer these settings get. `auto` takes native only for PLAINTEXT: its SASL
    /// path (rskafka's) is not exercised by our tests (the test broker cannot hold users), so
    /// SASL stays on librdkafka unless `client: native` asks for it.
    pub fn uses_native(&self) -> bool {
        match self.client.unwrap_or_default() {
            ClientChoice::Auto => {
                self.protocol() == SecurityProtocol::Plaintext && crate::native::supports(self)
            }
            ClientChoice::Native => crate::native::supports(self),
            ClientChoice::Librdkafka => false,
        }
    }

    fn validate(&self) -> Result<(), PluginError> {
        let key_error = |key: &str, text: String| {
            PluginError::config(format!("config key `{key}`: {text}"))
                .with_details(serde_json::json!({"key": key}))
        };
        let size = self.queue_size();
        if !(1..=MAX_QUEUE_SIZE).contains(&size) {
            return Err(key_error(
                "queue_size",
                format!("must be between 1 and {MAX_QUEUE_SIZE}, got {size}"),
            ));
        }
        if self.client == Some(ClientChoice::Native) && !crate::native::supports(self) {
            return Err(key_error(
                "client",
                "`native` supports PLAINTEXT and SASL_PLAINTEXT with PLAIN or SCRAM and no \
                 `librdkafka` properties; use `librdkafka` (or `auto`) for these settings"
                    .to_string(),
            ));
        }
        if self.stall_timeout_ms() < 1000 {
            return Err(key_error(
                "stall_timeout_ms",
                "must be at least 1000".to_string(),
            ));
        }
        let protocol = self.protocol();
        if protocol.is_sasl() && self.mechanism().needs_credentials() {
            if self.sasl_username.is_none() {
                return Err(key_error(
                    "sasl_username",
                    format!(
                        "required with security_protocol {protocol} and sasl_mechanism {}",
                        self.mechanism().as_str()
                    ),
                ));
            }
            if self.sasl_password.is_none() {
                return Err(key_error(
                    "sasl_password",
                    format!(
                        "required with security_protocol {protocol} and sasl_mechanism {}",
                        self.mechanism().as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The librdkafka configuration. Settings that Rasa would ignore for the chosen protocol
    /// (SASL fields with `SSL`, TLS files with `SASL_PLAINTEXT`) are ignored with a warning.
    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.url);
        if let Some(id) = &self.client_id {
            cc.set("client.id", id);
        }
        let protocol = self.protocol();
        cc.set("security.protocol", protocol.as_str());
        if protocol.is_sasl() {
            cc.set("sasl.mechanism", self.mechanism().as_str());
            if let Some(user) = &self.sasl_username {
                cc.set("sasl.username", user);
            }
            if let Some(password) = &self.sasl_password {
                cc.set("sasl.password", password);
            }
        } else if self.sasl_username.is_some() || self.sasl_mechanism.is_some() {
            tracing::warn!("kafka: SASL settings are ignored with security_protocol {protocol}");
        }
        if protocol.is_ssl() {
            for (file, key) in [
                (&self.ssl_cafile, "ssl.ca.location"),
                (&self.ssl_certfile, "ssl.certificate.location"),
                (&self.ssl_keyfile, "ssl.key.location"),
            ] {
                if let Some(path) = file {
                    cc.set(key, path);
                }
            }
            // Unset keeps librdkafka's default (verify the host name); Rasa's `false`
            // default would silently turn verification off.
            if let Some(check) = self.ssl_check_hostname {
                cc.set(
                    "ssl.endpoint.identification.algorithm",
                    if check { "https" } else { "none" },
                );
            }
        } else if self.ssl_cafile.is_some()
            || self.ssl_certfile.is_some()
            || self.ssl_keyfile.is_some()
        {
            tracing::warn!("kafka: ssl_* files are ignored with security_protocol {protocol}");
        }

        // Delivery guarantees: no duplicates and per-partition order across retries.
        cc.set("enable.idempotence", "true");
        cc.set("acks", "all");
        // 0 = retry forever: while the broker is down, events wait in the bounded queue
        // instead of expiring; the bound (not a timer) decides when events are refused.
        cc.set("message.timeout.ms", "0");
        cc.set(
            "queue.buffering.max.messages",
            self.queue_size().to_string(),
        );
        // Reconnect quickly once the broker is back (librdkafka's default backs off to 10 s).
        cc.set("reconnect.backoff.max.ms", "2000");
        // Statistics drive the `ok` flag of health() without any I/O on the caller's side.
        cc.set("statistics.interval.ms", "1000");

        for (key, value) in &self.librdkafka {
            cc.set(key, value);
        }
        cc
    }
}

// ------------------------------------------------------------------------------------------
// Lenient deserialisers.

fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Servers {
        One(String),
        Many(Vec<String>),
    }
    let list = match Servers::deserialize(d)
        .map_err(|_| de::Error::custom("expected a \"host:port\" string or a list of them"))?
    {
        Servers::One(s) => s
            .split(',')
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>(),
        Servers::Many(v) => v.into_iter().map(|s| s.trim().to_string()).collect(),
    };
    let list: Vec<String> = list.into_iter().filter(|s| !s.is_empty()).collect();
    if list.is_empty() {
        return Err(de::Error::custom("no broker address given"));
    }
    Ok(list.join(","))
}

fn non_empty_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(s)
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        // YAML 1.1 spellings that `${VAR}` expansion or old configs may produce.
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| n == 1),
        _ => None,
    }
}

fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => parse_bool(&v)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {v}"))),
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(lenient_opt_bool(d)?.unwrap_or(false))
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
        Value::String(s) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
        v => Err(de::Error::custom(format!(
            "expected a non-negative integer, got {v}"
        ))),
    }
}

fn optional_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(de::Error::custom),
    }
}

fn raw_properties<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(de::Error::custom(format!(
                        "property {k:?}: expected a scalar, got {other}"
                    )))
                }
            };
            Ok((k, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<KafkaConfig, PluginError> {
        KafkaConfig::from_json(json)
    }

    #[test]
    fn defaults_follow_rasa_except_the_protocol() {
        let c = parse(r#"{"url": "localhost:9092"}"#).unwrap();
        assert_eq!(c.topic, "rasa_core_events");
        assert_eq!(c.protocol(), SecurityProtocol::Plaintext);
        assert_eq!(c.mechanism(), SaslMechanism::Plain);
        assert!(!c.partition_by_sender);
        assert_eq!(c.queue_size(), DEFAULT_QUEUE_SIZE);
        let c = parse(r#"{"url": "h:1", "sasl_username": "u", "sasl_password": "p"}"#).unwrap();
        assert_eq!(c.protocol(), SecurityProtocol::SaslPlaintext);
    }

    #[test]
    fn the_client_is_native_where_it_covers_the_settings() {
        let native = |json: &str| parse(json).unwrap().uses_native();
        assert!(native(r#"{"url": "h:1"}"#));
        assert!(native(r#"{"url": "h:1", "client": "Native"}"#));
        // SASL: native only when asked for.
        assert!(!native(
            r#"{"url": "h:1", "sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "SCRAM-SHA-512"}"#
        ));
        assert!(native(
            r#"{"url": "h:1", "client": "native", "sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "SCRAM-SHA-512"}"#
        ));
        assert!(!native(r#"{"url": "h:1", "client": "librdkafka"}"#));
        // auto falls back to librdkafka for what only it provides.
        assert!(!native(r#"{"url": "h:1", "security_protocol": "SSL"}"#));
        assert!(!native(
            r#"{"url": "h:1", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI"}"#
        ));
        assert!(!native(
            r#"{"url": "h:1", "librdkafka": {"linger.ms": 50}}"#
        ));
        // Asking for native where it cannot serve is an error naming the key.
        for json in [
            r#"{"url": "h:1", "client": "native", "security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"}"#,
            r#"{"url": "h:1", "client": "native", "librdkafka": {"linger.ms": 50}}"#,
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.message.contains("`client`"), "{e}");
        }
        let e = parse(r#"{"url": "h:1", "client": "java"}"#).unwrap_err();
        assert!(e.message.contains("client"), "{e}");
    }

    #[test]
    fn strings_from_env_expansion_are_accepted() {
        let c = parse(
            r#"{"url": ["a:1", "b:2"], "partition_by_sender": "True", "queue_size": "7",
                "ssl_check_hostname": "false", "security_protocol": "ssl",
                "librdkafka": {"linger.ms": 5, "socket.keepalive.enable": true}}"#,
        )
        .unwrap();
        assert_eq!(c.url, "a:1,b:2");
        assert!(c.partition_by_sender);
        assert_eq!(c.queue_size(), 7);
        assert_eq!(c.ssl_check_hostname, Some(false));
        assert_eq!(c.protocol(), SecurityProtocol::Ssl);
        assert_eq!(c.librdkafka["linger.ms"], "5");
        assert_eq!(c.librdkafka["socket.keepalive.enable"], "true");
    }

    #[test]
    fn errors_name_the_field() {
        for (json, key) in [
            (
                r#"{"url": "h:1", "security_protocol": "SOMETHING"}"#,
                "security_protocol",
            ),
            (
                r#"{"url": "h:1", "sasl_mechanism": "MD5"}"#,
                "sasl_mechanism",
            ),
            (r#"{"url": "h:1", "queue_size": 0}"#, "queue_size"),
            (r#"{"url": "h:1", "queue_size": "many"}"#, "queue_size"),
            (
                r#"{"url": "h:1", "partition_by_sender": "maybe"}"#,
                "partition_by_sender",
            ),
            (r#"{"url": "h:1", "partition_key": "x"}"#, "partition_key"),
            (r#"{"url": ""}"#, "url"),
            (r#"{"topic": "t"}"#, "url"),
            (
                r#"{"url": "h:1", "security_protocol": "SASL_SSL"}"#,
                "sasl_username",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert_eq!(e.kind, colloquy_plugin_api::ErrorKind::CONFIG);
            assert!(e.message.contains(key), "{json}: {}", e.message);
        }
    }
}
