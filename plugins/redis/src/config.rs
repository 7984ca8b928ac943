//! Configuration: Rasa's `RedisTrackerStore` / `RedisLockStore` keys, typed.
//!
//! The endpoints YAML reaches us as JSON after `${VAR}` expansion, which turns every expanded
//! value into a string; numbers and booleans therefore also accept their string spelling
//! (`port: "6379"`, `use_ssl: "true"`). Unknown keys are refused (`deny_unknown_fields`), and
//! `parse_config` names the offending key in the error. One struct serves both stores so that
//! the shared keys are spelled once; the keys that belong to only one of them are checked
//! afterwards with an error that names the key.
//!
//! Differences from Rasa, on purpose (decisions.md §2, "no silent fallbacks"): a non
//! alphanumeric `key_prefix` is an error instead of a warning; `url` may also be a complete
//! `redis://` / `rediss://` URL.

use std::fmt;
use std::time::Duration;

use colloquy_plugin_api::{sdk::parse_config, PluginError};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Which component is being configured; the defaults and allowed keys differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TrackerStore,
    LockStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: Option<String>,
    #[serde(default, deserialize_with = "flex_u64")]
    port: Option<u64>,
    #[serde(default, deserialize_with = "flex_u64")]
    db: Option<u64>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default, deserialize_with = "flex_bool")]
    use_ssl: Option<bool>,
    ssl_certfile: Option<String>,
    ssl_keyfile: Option<String>,
    ssl_ca_certs: Option<String>,
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "flex_f64")]
    record_exp: Option<f64>,
    #[serde(default, deserialize_with = "flex_f64")]
    socket_timeout: Option<f64>,
    #[serde(default, deserialize_with = "flex_f64")]
    lifetime: Option<f64>,
}

/// TLS material, paths as configured (read when the client is built).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub ca_certs: Option<String>,
}

/// The validated configuration of one store.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// A complete `redis://` or `rediss://` URL (credentials and db included).
    pub url: String,
    /// `Some` when TLS is on.
    pub tls: Option<TlsFiles>,
    /// `"<prefix>:"` or empty.
    pub key_prefix: String,
    /// Tracker store only: TTL refreshed on every write.
    pub record_exp: Option<Duration>,
    /// Connect and response timeout.
    pub socket_timeout: Duration,
    /// Lock store only: the lease used when the caller passes `lifetime_ms = 0`.
    pub lifetime: Duration,
}

impl RedisConfig {
    /// Parses a store's config JSON (what the host hands to the constructor).
    pub fn parse(kind: Kind, json: &str) -> Result<Self, PluginError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let raw: RawConfig = parse_config(json)?;
        Self::from_raw(kind, raw, std::env::var("TICKET_LOCK_LIFETIME").ok())
    }

    fn from_raw(
        kind: Kind,
        raw: RawConfig,
        env_lifetime: Option<String>,
    ) -> Result<Self, PluginError> {
        let only = |key: &str, set: bool, owner: &str| -> Result<(), PluginError> {
            if set {
                Err(key_error(key, format!("only valid for the Redis {owner}")))
            } else {
                Ok(())
            }
        };
        match kind {
            Kind::TrackerStore => only("lifetime", raw.lifetime.is_some(), "lock store")?,
            Kind::LockStore => only("record_exp", raw.record_exp.is_some(), "tracker store")?,
        }

        let key_prefix = match raw.key_prefix.as_deref() {
            None | Some("") => String::new(),
            Some(p) if p.chars().all(|c| c.is_ascii_alphanumeric()) => format!("{p}:"),
            Some(p) => {
                return Err(key_error(
                    "key_prefix",
                    format!(
                        "{p:?} must be alphanumeric (as in Rasa, which ignores it with a warning)"
                    ),
                ))
            }
        };

        let record_exp = match raw.record_exp {
            None => None,
            Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s.ceil())),
            Some(s) => {
                return Err(key_error(
                    "record_exp",
                    format!("must be a positive number of seconds, got {s}"),
                ))
            }
        };
        let socket_timeout = positive_secs("socket_timeout", raw.socket_timeout.unwrap_or(10.0))?;
        let lifetime = match raw.lifetime {
            Some(s) => positive_secs("lifetime", s)?,
            None => match env_lifetime
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                None => Duration::from_secs(60),
                Some(s) => {
                    let secs: f64 = s.parse().map_err(|_| {
                        PluginError::config(format!(
                            "environment variable TICKET_LOCK_LIFETIME: expected seconds, got {s:?}"
                        ))
                    })?;
                    positive_secs("TICKET_LOCK_LIFETIME", secs)?
                }
            },
        };

        let default_db = match kind {
            Kind::TrackerStore => 0,
            Kind::LockStore => 1,
        };
        let use_ssl = raw.use_ssl.unwrap_or(false);
        let host = raw
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or("localhost");

        let (url, tls_on) = if let Some((scheme, rest)) = host.split_once("://") {
            let tls_on = match scheme {
                "redis" => false,
                "rediss" => true,
                other => {
                    return Err(key_error(
                        "url",
                        format!("unsupported scheme {other:?}; use redis:// or rediss://"),
                    ))
                }
            };
            for (key, set) in [
                ("port", raw.port.is_some()),
                ("username", raw.username.is_some()),
                ("password", raw.password.is_some()),
            ] {
                if set {
                    return Err(key_error(
                        key,
                        "cannot be combined with a complete URL in `url`; put it in the URL",
                    ));
                }
            }
            if use_ssl && !tls_on {
                return Err(key_error(
                    "use_ssl",
                    "is true but `url` uses redis://; use rediss:// for TLS",
                ));
            }
            let (authority, path) = match rest.split_once('/') {
                Some((a, p)) => (a, p),
                None => (rest, ""),
            };
            let path = path.split(['?', '#']).next().unwrap_or("");
            let db = match (path.is_empty(), raw.db) {
                (true, db) => db.unwrap_or(default_db),
                (false, None) => path.parse::<u64>().map_err(|_| {
                    key_error(
                        "url",
                        format!("database {path:?} in the URL is not a number"),
                    )
                })?,
                (false, Some(_)) => {
                    return Err(key_error(
                        "db",
                        "is also given in `url`; set it in one place",
                    ))
                }
            };
            if authority.is_empty() {
                return Err(key_error("url", "has no host"));
            }
            (format!("{scheme}://{authority}/{db}"), tls_on)
        } else {
            if host.contains(['/', '@', ' ']) {
                return Err(key_error(
                    "url",
                    format!("{host:?} is neither a host name nor a redis:// URL"),
                ));
            }
            let port = raw.port.unwrap_or(6379);
            if port == 0 || port > u16::MAX as u64 {
                return Err(key_error("port", format!("{port} is not a TCP port")));
            }
            let db = raw.db.unwrap_or(default_db);
            let scheme = if use_ssl { "rediss" } else { "redis" };
            let userinfo = match (&raw.username, &raw.password) {
                (None, None) => String::new(),
                (u, p) => format!(
                    "{}{}@",
                    pct(u.as_deref().unwrap_or("")),
                    p.as_deref()
                        .map(|p| format!(":{}", pct(p)))
                        .unwrap_or_default()
                ),
            };
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            (format!("{scheme}://{userinfo}{host}:{port}/{db}"), use_ssl)
        };

        let tls_files = TlsFiles {
            certfile: raw.ssl_certfile,
            keyfile: raw.ssl_keyfile,
            ca_certs: raw.ssl_ca_certs,
        };
        let tls = if tls_on {
            if tls_files.certfile.is_some() != tls_files.keyfile.is_some() {
                let missing = if tls_files.certfile.is_none() {
                    "ssl_certfile"
                } else {
                    "ssl_keyfile"
                };
                return Err(key_error(
                    missing,
                    "is required when the other half of the client certificate is set",
                ));
            }
            Some(tls_files)
        } else {
            for (key, set) in [
                ("ssl_certfile", tls_files.certfile.is_some()),
                ("ssl_keyfile", tls_files.keyfile.is_some()),
                ("ssl_ca_certs", tls_files.ca_certs.is_some()),
            ] {
                if set {
                    return Err(key_error(
                        key,
                        "is set but TLS is off; set `use_ssl: true` or use a rediss:// URL",
                    ));
                }
            }
            None
        };

        Ok(RedisConfig {
            url,
            tls,
            key_prefix,
            record_exp,
            socket_timeout,
            lifetime,
        })
    }

    /// The URL without its password, for logs and errors.
    pub fn redacted_url(&self) -> String {
        match (self.url.split_once("://"), self.url.rfind('@')) {
            (Some((scheme, rest)), Some(_)) => {
                let (userinfo, tail) = rest.rsplit_once('@').unwrap_or(("", rest));
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{tail}")
            }
            _ => self.url.clone(),
        }
    }
}

fn key_error(key: &str, text: impl fmt::Display) -> PluginError {
    PluginError::config(format!("config key `{key}`: {text}"))
        .with_details(serde_json::json!({"key": key}))
}

fn positive_secs(key: &str, secs: f64) -> Result<Duration, PluginError> {
    if secs > 0.0 && secs.is_finite() && secs < 1e9 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(key_error(
            key,
            format!("must be a positive number of seconds, got {secs}"),
        ))
    }
}

/// Percent-encodes a URL user-info component (RFC 3986 unreserved characters stay as-is).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A YAML scalar as it arrives: expanded `${VAR}`s are strings, literals keep their type.
enum Scalar {
    Bool(bool),
    /// The value, and its exact form when it is a non-negative integer.
    Num(f64, Option<u64>),
    Str(String),
}

impl Scalar {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Scalar::Bool(b) => de::Unexpected::Bool(*b),
            Scalar::Num(v, _) => de::Unexpected::Float(*v),
            Scalar::Str(s) => de::Unexpected::Str(s),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Scalar>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a boolean or a string")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Bool(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Num(v as f64, Some(v))))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Num(v as f64, u64::try_from(v).ok())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Num(v, None)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(v.trim().to_string())))
    }
}

/// Deserialises an optional scalar and converts it with `convert`, or fails with `expected`.
fn flex<'de, D: Deserializer<'de>, T>(
    d: D,
    expected: &'static str,
    convert: fn(&Scalar) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    match d.deserialize_option(ScalarVisitor)? {
        None => Ok(None),
        Some(s) => convert(&s)
            .map(Some)
            .ok_or_else(|| de::Error::invalid_value(s.unexpected(), &expected)),
    }
}

fn flex_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    flex(
        d,
        "a non-negative integer (or a string holding one)",
        |s| match s {
            Scalar::Num(_, exact) => *exact,
            Scalar::Str(t) => t.parse().ok(),
            Scalar::Bool(_) => None,
        },
    )
}

fn flex_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    flex(
        d,
        "a number of seconds (or a string holding one)",
        |s| match s {
            Scalar::Num(v, _) => Some(*v),
            Scalar::Str(t) => t.parse().ok().filter(|v: &f64| v.is_finite()),
            Scalar::Bool(_) => None,
        },
    )
}

fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flex(d, "true or false (or a string holding one)", |s| match s {
        Scalar::Bool(b) => Some(*b),
        Scalar::Str(t) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        Scalar::Num(_, Some(n)) if *n <= 1 => Some(*n == 1),
        Scalar::Num(..) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(json: &str) -> Result<RedisConfig, PluginError> {
        RedisConfig::parse(Kind::TrackerStore, json)
    }
    fn lock(json: &str, env: Option<&str>) -> Result<RedisConfig, PluginError> {
        let raw: RawConfig = parse_config(json)?;
        RedisConfig::from_raw(Kind::LockStore, raw, env.map(String::from))
    }

    #[test]
    fn defaults_match_rasa() {
        let t = tracker("{}").unwrap();
        assert_eq!(t.url, "redis://localhost:6379/0");
        assert_eq!(t.key_prefix, "");
        assert_eq!(t.socket_timeout, Duration::from_secs(10));
        assert!(t.tls.is_none() && t.record_exp.is_none());
        let l = lock("{}", None).unwrap();
        assert_eq!(l.url, "redis://localhost:6379/1");
        assert_eq!(l.lifetime, Duration::from_secs(60));
        assert_eq!(
            lock("{}", Some("5")).unwrap().lifetime,
            Duration::from_secs(5)
        );
        assert_eq!(
            lock(r#"{"lifetime": 7}"#, Some("5")).unwrap().lifetime,
            Duration::from_secs(7)
        );
        assert!(lock("{}", Some("soon"))
            .unwrap_err()
            .message
            .contains("TICKET_LOCK_LIFETIME"));
    }

    #[test]
    fn strings_from_env_expansion_are_accepted() {
        let t = tracker(
            r#"{"url": "redis.local", "port": "6380", "db": "3", "password": "p@ss:w", "username": "bot",
                "key_prefix": "abc1", "record_exp": "30", "socket_timeout": "2.5", "use_ssl": "false"}"#,
        )
        .unwrap();
        assert_eq!(t.url, "redis://bot:p%40ss%3Aw@redis.local:6380/3");
        assert_eq!(t.key_prefix, "abc1:");
        assert_eq!(t.record_exp, Some(Duration::from_secs(30)));
        assert_eq!(t.socket_timeout, Duration::from_millis(2500));
        assert_eq!(t.redacted_url(), "redis://bot:***@redis.local:6380/3");
    }

    #[test]
    fn full_urls() {
        assert_eq!(
            tracker(r#"{"url": "redis://:pw@h:1/4"}"#).unwrap().url,
            "redis://:pw@h:1/4"
        );
        assert_eq!(
            lock(r#"{"url": "redis://h"}"#, None).unwrap().url,
            "redis://h/1"
        );
        assert_eq!(
            tracker(r#"{"url": "redis://h", "db": 2}"#).unwrap().url,
            "redis://h/2"
        );
        let t = tracker(r#"{"url": "rediss://h:6390", "ssl_ca_certs": "/ca.pem"}"#).unwrap();
        assert_eq!(t.tls.unwrap().ca_certs.as_deref(), Some("/ca.pem"));
        assert!(tracker(r#"{"url": "redis://h/1", "db": 2}"#)
            .unwrap_err()
            .message
            .contains("`db`"));
        assert!(tracker(r#"{"url": "redis://h", "port": 2}"#)
            .unwrap_err()
            .message
            .contains("`port`"));
        assert!(tracker(r#"{"url": "http://h"}"#)
            .unwrap_err()
            .message
            .contains("`url`"));
        assert!(tracker(r#"{"url": "redis://h", "use_ssl": true}"#)
            .unwrap_err()
            .message
            .contains("`use_ssl`"));
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{"prot": 1}"#, "prot"),
            (r#"{"port": "x"}"#, "`port`"),
            (r#"{"port": 70000}"#, "`port`"),
            (r#"{"port": -1}"#, "`port`"),
            (r#"{"db": 1.5}"#, "`db`"),
            (r#"{"use_ssl": "maybe"}"#, "`use_ssl`"),
            (r#"{"key_prefix": "a-b"}"#, "`key_prefix`"),
            (r#"{"record_exp": 0}"#, "`record_exp`"),
            (r#"{"socket_timeout": "soon"}"#, "`socket_timeout`"),
            (r#"{"lifetime": 5}"#, "`lifetime`"),
            (r#"{"ssl_certfile": "/c.pem"}"#, "`ssl_certfile`"),
            (
                r#"{"use_ssl": true, "ssl_certfile": "/c.pem"}"#,
                "`ssl_keyfile`",
            ),
        ] {
            let e = tracker(json).unwrap_err();
            assert_eq!(e.kind, colloquy_plugin_api::ErrorKind::CONFIG);
            assert!(e.message.contains(key), "{json}: {}", e.message);
        }
        let e = lock(r#"{"record_exp": 5}"#, None).unwrap_err();
        assert!(e.message.contains("`record_exp`"), "{}", e.message);
    }
}
