//! A `bot` event's `data`. 3.6 writes the same six keys for every message a response or an
//! action makes (`elements`, `quick_replies`, `buttons`, `attachment`, `image`, `custom`, null
//! when absent); most messages are text only, so all six are null. Those events keep just the
//! parts they have, instead of a map with six keys of their own: a bot message costs no map,
//! no key strings and no hashing, and is written with constant keys (`write`).
//!
//! An event read from JSON whose data is not exactly that shape keeps its map as given, so
//! what a client or a store sent is written back unchanged.

use serde_json::{Map, Value};

/// The six keys of 3.6's bot data, in its order.
pub const BOT_DATA_KEYS: [&str; 6] = [
    "elements",
    "quick_replies",
    "buttons",
    "attachment",
    "image",
    "custom",
];

#[derive(Debug, Clone)]
pub enum BotData {
    /// 3.6's shape: the non-null parts, by their index in [`BOT_DATA_KEYS`], in that order.
    Parts(Vec<(u8, Value)>),
    /// Any other object, as given.
    Raw(Map<String, Value>),
}

impl Default for BotData {
    fn default() -> Self {
        BotData::Parts(Vec::new())
    }
}

impl BotData {
    /// A message's `text` and its data in 3.6's shape: the six keys it has (its other keys
    /// are neither). One pass over the message, which is taken apart rather than copied.
    pub fn split_message(message: Map<String, Value>) -> (Option<Value>, BotData) {
        let mut text = None;
        let mut parts = Vec::new();
        for (key, value) in message {
            if key == "text" {
                text = Some(value);
            } else if let Some(i) = BOT_DATA_KEYS.iter().position(|k| *k == key) {
                if !value.is_null() {
                    parts.push((i as u8, value));
                }
            }
        }
        parts.sort_unstable_by_key(|(i, _)| *i);
        (text, BotData::Parts(parts))
    }

    /// Data read from JSON: 3.6's shape when it is exactly that (the six keys in order),
    /// otherwise the map as it is.
    pub fn from_map(map: Map<String, Value>) -> BotData {
        let is_36_shape = map.len() == BOT_DATA_KEYS.len()
            && map
                .keys()
                .zip(BOT_DATA_KEYS)
                .all(|(k, expected)| k == expected);
        if !is_36_shape {
            return BotData::Raw(map);
        }
        let parts = map
            .into_iter()
            .enumerate()
            .filter(|(_, (_, v))| !v.is_null())
            .map(|(i, (_, v))| (i as u8, v))
            .collect();
        BotData::Parts(parts)
    }

    /// The value under `key`, if it is there and not null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            BotData::Parts(parts) => {
                let i = BOT_DATA_KEYS.iter().position(|k| *k == key)?;
                parts.iter().find(|(p, _)| *p as usize == i).map(|(_, v)| v)
            }
            BotData::Raw(map) => map.get(key).filter(|v| !v.is_null()),
        }
    }

    /// The data as the JSON object 3.6 has.
    pub fn to_value(&self) -> Value {
        match self {
            BotData::Parts(parts) => {
                let mut map = Map::with_capacity(BOT_DATA_KEYS.len());
                for (i, key) in BOT_DATA_KEYS.into_iter().enumerate() {
                    let v = parts.iter().find(|(p, _)| *p as usize == i);
                    map.insert(key.into(), v.map_or(Value::Null, |(_, v)| v.clone()));
                }
                Value::Object(map)
            }
            BotData::Raw(map) => Value::Object(map.clone()),
        }
    }

    /// Appends the data's JSON text to `out`: what `to_value` would write.
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            BotData::Parts(parts) => {
                let mut given = parts.iter().peekable();
                for (i, key) in BOT_DATA_KEYS.into_iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(b"\":");
                    match given.next_if(|(p, _)| *p as usize == i) {
                        Some((_, v)) => serde_json::to_writer(&mut *out, v)?,
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.push(b'}');
                Ok(())
            }
            BotData::Raw(map) => serde_json::to_writer(&mut *out, map),
        }
    }
}

/// Data are equal when they are the same JSON, whichever way each is held.
impl PartialEq for BotData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BotData::Parts(a), BotData::Parts(b)) => a == b,
            (BotData::Raw(a), BotData::Raw(b)) => a == b,
            _ => self.to_value() == other.to_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parts_are_written_as_the_six_keys_in_36s_order() {
        let message = map(json!({
            "text": "Pick",
            "custom": {"a": 1},
            "buttons": [{"title": "x", "payload": "/x"}],
            "image": null,
            "channel": "rest"
        }));
        // Only the six keys are data; other keys are neither text nor data.
        let (text, data) = BotData::split_message(message);
        assert_eq!(text, Some(json!("Pick")));
        let expected = json!({
            "elements": null, "quick_replies": null,
            "buttons": [{"title": "x", "payload": "/x"}],
            "attachment": null, "image": null, "custom": {"a": 1}
        });
        let mut out = Vec::new();
        data.write(&mut out).unwrap();
        assert_eq!(out, serde_json::to_vec(&expected).unwrap());
        assert_eq!(data.to_value(), expected);
        assert_eq!(data.get("custom"), Some(&json!({"a": 1})));
        assert_eq!(data.get("image"), None);
        assert_eq!(data.get("text"), None);

        let (text, empty) = BotData::split_message(Map::new());
        assert_eq!(text, None);
        let mut out = Vec::new();
        empty.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"elements":null,"quick_replies":null,"buttons":null,"attachment":null,"image":null,"custom":null}"#
        );
    }

    #[test]
    fn data_read_from_json_is_kept_as_given_unless_it_is_36s_shape() {
        let shaped = json!({
            "elements": null, "quick_replies": null, "buttons": [1],
            "attachment": null, "image": "i.png", "custom": null
        });
        let data = BotData::from_map(map(shaped.clone()));
        assert!(matches!(&data, BotData::Parts(p) if p.len() == 2));
        assert_eq!(data.to_value(), shaped);

        for other in [
            json!({}),
            json!({"buttons": [1]}),
            // The six keys, another order: written back in that order.
            json!({"quick_replies": null, "elements": null, "buttons": [1],
                   "attachment": null, "image": null, "custom": null}),
            json!({"elements": null, "quick_replies": null, "buttons": null,
                   "attachment": null, "image": null, "custom": null, "extra": 2}),
        ] {
            let data = BotData::from_map(map(other.clone()));
            assert!(matches!(data, BotData::Raw(_)), "{other}");
            let mut out = Vec::new();
            data.write(&mut out).unwrap();
            assert_eq!(out, serde_json::to_vec(&other).unwrap());
        }
        assert_eq!(
            BotData::from_map(map(json!({"buttons": [1]}))).get("buttons"),
            Some(&json!([1]))
        );
        // The same JSON held either way is equal.
        let raw = BotData::Raw(map(shaped.clone()));
        assert_eq!(raw, BotData::from_map(map(shaped)));
    }
}
