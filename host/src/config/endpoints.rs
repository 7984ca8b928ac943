//! The endpoints YAML: one section per component, `type:` choosing the implementation.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use super::env::{expand, EnvError};

#[derive(Debug, Error)]
pub enum EndpointsError {
    #[error("cannot read endpoints file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("endpoints file {path} is not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("endpoints file {path}: the top level must be a mapping of sections")]
    NotAMapping { path: PathBuf },
    #[error("endpoints file {path}, section `{section}`: {source}")]
    Env {
        path: PathBuf,
        section: String,
        source: EnvError,
    },
    #[error("endpoints file {path}, section `{section}`: {message}")]
    Section {
        path: PathBuf,
        section: String,
        message: String,
    },
}

/// One component section: its `type` (or Rasa's older `store_type`) and the rest as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentConfig {
    pub kind: Option<String>,
    pub config: Map<String, Value>,
}

impl ComponentConfig {
    pub fn of_type(kind: &str) -> ComponentConfig {
        ComponentConfig {
            kind: Some(kind.into()),
            config: Map::new(),
        }
    }
}

/// The sections Colloquy reads. Unknown top-level keys are ignored, as in Rasa.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub path: Option<PathBuf>,
    pub tracker_store: Option<ComponentConfig>,
    pub lock_store: Option<ComponentConfig>,
    pub event_broker: Option<ComponentConfig>,
    pub nlu: Option<ComponentConfig>,
    pub models: Option<ComponentConfig>,
    pub action_endpoint: Option<ComponentConfig>,
    pub nlg: Option<ComponentConfig>,
}

impl Endpoints {
    pub fn load(path: &Path) -> Result<Endpoints, EndpointsError> {
        let text = std::fs::read_to_string(path).map_err(|source| EndpointsError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    pub fn parse(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Endpoints, EndpointsError> {
        let yaml: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| EndpointsError::Yaml {
                path: path.into(),
                message: e.to_string(),
            })?;
        let mut out = Endpoints {
            path: Some(path.into()),
            ..Default::default()
        };
        let map = match yaml {
            serde_norway::Value::Null => return Ok(out),
            serde_norway::Value::Mapping(m) => m,
            _ => return Err(EndpointsError::NotAMapping { path: path.into() }),
        };
        for (key, value) in map {
            let Some(section) = key.as_str() else {
                continue;
            };
            let slot = match section {
                "tracker_store" => &mut out.tracker_store,
                "lock_store" => &mut out.lock_store,
                "event_broker" => &mut out.event_broker,
                "nlu" => &mut out.nlu,
                "models" => &mut out.models,
                "action_endpoint" => &mut out.action_endpoint,
                "nlg" => &mut out.nlg,
                _ => continue,
            };
            let section_err = |message: String| EndpointsError::Section {
                path: path.into(),
                section: section.into(),
                message,
            };
            let json = yaml_to_json(&value, lookup).map_err(|e| match e {
                Conversion::Env(source) => EndpointsError::Env {
                    path: path.into(),
                    section: section.into(),
                    source,
                },
                Conversion::Other(m) => section_err(m),
            })?;
            let mut config = match json {
                // A section with nothing under it means "not configured" (3.x).
                Value::Null => continue,
                Value::Object(m) => m,
                other => return Err(section_err(format!("expected a mapping, got {other}"))),
            };
            // `store_type` wins over `type` when both are present, as in Rasa.
            let kind = match (config.remove("store_type"), config.remove("type")) {
                (Some(k), _) | (None, Some(k)) => match k {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    other => {
                        return Err(section_err(format!("`type` must be a string, got {other}")))
                    }
                },
                (None, None) => None,
            };
            *slot = Some(ComponentConfig { kind, config });
        }
        Ok(out)
    }
}

enum Conversion {
    Env(EnvError),
    Other(String),
}

/// YAML → JSON, expanding `${VAR}` in every string scalar.
fn yaml_to_json(
    v: &serde_norway::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, Conversion> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(expand(s, lookup).map_err(Conversion::Env)?),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .map(|i| yaml_to_json(i, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(Conversion::Other(format!(
                            "unsupported mapping key {other:?}"
                        )))
                    }
                };
                out.insert(key, yaml_to_json(v, lookup)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(&t.value, lookup)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Endpoints, EndpointsError> {
        let env = |n: &str| (n == "REDIS_HOST").then(|| "10.0.0.5".to_string());
        Endpoints::parse(text, Path::new("endpoints.yml"), &env)
    }

    #[test]
    fn sections_and_types() {
        let e = parse("tracker_store:\n  type: redis\n  url: ${REDIS_HOST}\n  port: \"${PORT:-6379}\"\nlock_store:\nevent_broker:\n  store_type: file\n  type: kafka\ncore_endpoint: x\n").unwrap();
        let ts = e.tracker_store.unwrap();
        assert_eq!(ts.kind.as_deref(), Some("redis"));
        assert_eq!(ts.config["url"], "10.0.0.5");
        assert_eq!(ts.config["port"], "6379");
        assert!(e.lock_store.is_none());
        assert_eq!(e.event_broker.unwrap().kind.as_deref(), Some("file"));
    }

    #[test]
    fn errors_name_the_variable_and_file() {
        let err = parse("tracker_store:\n  type: redis\n  password: ${REDIS_PASSWORD}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_PASSWORD")
                && err.contains("endpoints.yml")
                && err.contains("tracker_store"),
            "{err}"
        );
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("tracker_store: [1]\n").is_err());
        assert!(parse("a: [\n").is_err());
    }

    #[test]
    fn the_shared_rasa_examples_load() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/config-examples/"
        );
        for f in [
            "rasa-3.6.21/initial_project/endpoints.yml",
            "rasa-3.x/test_endpoints/endpoints_redis.yml",
            "rasa-3.x/examples/reminderbot/endpoints.yml",
        ] {
            let text = std::fs::read_to_string(format!("{dir}{f}")).unwrap();
            Endpoints::parse(&text, Path::new(f), &|_| Some("x".into())).unwrap();
        }
    }
}
