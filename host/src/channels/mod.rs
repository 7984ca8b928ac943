//! Input channels: where user messages arrive and where bot messages go, configured by
//! `credentials.yml` (`--credentials`). Without a credentials file the REST channel is on.

pub mod callback;
pub mod rest;

use std::path::Path;

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("credentials file {0}: {1}")]
    Invalid(String, String),
}

/// The channels to serve.
#[derive(Default)]
pub struct Channels {
    pub rest: bool,
    pub callback: Option<callback::CallbackOutput>,
}

impl Channels {
    /// REST only: what `rasa run` serves without credentials.
    pub fn rest_only() -> Channels {
        Channels {
            rest: true,
            callback: None,
        }
    }

    /// Reads `credentials.yml`: a mapping of channel name → its credentials (or null).
    pub fn load(path: &Path) -> Result<Channels, CredentialsError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| CredentialsError::Read(name.clone(), e))?;
        let yaml: serde_norway::Value = serde_norway::from_str(&text)
            .map_err(|e| CredentialsError::Invalid(name.clone(), e.to_string()))?;
        let json: Value = serde_json::to_value(&yaml)
            .map_err(|e| CredentialsError::Invalid(name.clone(), e.to_string()))?;
        let mut channels = Channels::default();
        let Some(map) = json.as_object() else {
            if json.is_null() {
                return Ok(Channels::rest_only());
            }
            return Err(CredentialsError::Invalid(
                name,
                "the top level must be a mapping of channel names".into(),
            ));
        };
        for (channel, creds) in map {
            let creds = expand_env(creds)
                .map_err(|e| CredentialsError::Invalid(name.clone(), format!("{channel}: {e}")))?;
            match channel.as_str() {
                "rest" => channels.rest = true,
                "callback" => {
                    channels.callback = Some(callback::CallbackOutput::from_credentials(&creds).map_err(|e| CredentialsError::Invalid(name.clone(), format!("callback: {e}")))?)
                }
                other => {
                    return Err(CredentialsError::Invalid(
                        name,
                        format!("channel `{other}` is not supported by Colloquy yet; available: rest, callback"),
                    ))
                }
            }
        }
        Ok(channels)
    }
}

/// `${VAR}` expansion in every string of a credentials section (as in endpoints files).
fn expand_env(v: &Value) -> Result<Value, crate::config::env::EnvError> {
    Ok(match v {
        Value::String(s) => {
            Value::String(crate::config::env::expand(s, &|n| std::env::var(n).ok())?)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(expand_env).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), expand_env(v)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}
