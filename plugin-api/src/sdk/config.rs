//! Typed configuration: the section's YAML arrives as JSON.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::PluginError;

/// Deserialises the config JSON into `T`. Errors name the offending key's path, e.g.
/// ``config key `port`: invalid type: string "x", expected u16``. Use
/// `#[serde(deny_unknown_fields)]` on `T` so that typos are reported instead of ignored.
pub fn parse_config<T: DeserializeOwned>(config_json: &str) -> Result<T, PluginError> {
    let de = &mut serde_json::Deserializer::from_str(config_json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // serde's own text for unknown fields already names the key.
        let text = strip_position(&inner.to_string());
        if path == "." || path.is_empty() {
            PluginError::config(format!("config: {text}"))
        } else {
            PluginError::config(format!("config key `{path}`: {text}"))
        }
        .with_details(serde_json::json!({"key": path}))
    })
}

fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Removes the SDK-level key `worker_threads` (the size of the plugin's runtime) from the
/// config, so that plugin configs with `deny_unknown_fields` accept it.
pub fn take_worker_threads(config_json: &str) -> Result<(String, Option<usize>), PluginError> {
    let mut value: Value = if config_json.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(config_json)
            .map_err(|e| PluginError::config(format!("config is not valid JSON: {e}")))?
    };
    let threads = match value
        .as_object_mut()
        .and_then(|m| m.remove("worker_threads"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=64).contains(&n)) => {
            n.as_u64().map(|n| n as usize)
        }
        Some(Value::String(s)) if s.parse::<usize>().is_ok_and(|n| (1..=64).contains(&n)) => {
            s.parse().ok()
        }
        Some(other) => {
            return Err(PluginError::config(format!(
                "config key `worker_threads`: expected an integer from 1 to 64, got {other}"
            )))
        }
    };
    Ok((value.to_string(), threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        port: u16,
        #[serde(default)]
        nested: Option<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u8,
    }

    #[test]
    fn names_unknown_and_ill_typed_keys() {
        let e = parse_config::<Cfg>(r#"{"port": 1, "prot": 2}"#).unwrap_err();
        assert!(e.message.contains("prot"), "{}", e.message);
        let e = parse_config::<Cfg>(r#"{"port": "x"}"#).unwrap_err();
        assert!(e.message.contains("`port`"), "{}", e.message);
        let e = parse_config::<Cfg>(r#"{"port": 1, "nested": {"depth": -1}}"#).unwrap_err();
        assert!(e.message.contains("nested.depth"), "{}", e.message);
        assert_eq!(e.kind, crate::ErrorKind::CONFIG);
    }

    #[test]
    fn worker_threads_is_taken_out() {
        let (rest, n) = take_worker_threads(r#"{"worker_threads": 2, "a": 1}"#).unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(rest, r#"{"a":1}"#);
        assert!(take_worker_threads(r#"{"worker_threads": 0}"#).is_err());
    }
}
