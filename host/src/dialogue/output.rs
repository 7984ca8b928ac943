//! Bot messages as channels deliver them (rasa-endpoints §8.3): `{recipient_id, text, …}`.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::engine::{write_json_string, BotData, Event, EventKind};

/// One message as a channel delivers it. Its keys are written in the order of 3.6's
/// `CollectingOutputChannel` (`recipient_id`, `text`, `image`, `buttons`, `attachment`,
/// `custom`), and those it does not have are left out, as there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelMessage {
    pub recipient_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

impl ChannelMessage {
    /// The message's JSON, byte for byte what its `Serialize` derive writes with
    /// `serde_json::to_writer`, but its strings written by the engine's writer
    /// ([`write_json_string`]): serde_json's escaper looks every byte of the text up, and
    /// this is written for every answer of the REST channel.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"recipient_id\":");
        write_json_string(out, &self.recipient_id)?;
        if let Some(text) = &self.text {
            out.extend_from_slice(b",\"text\":");
            write_json_string(out, text)?;
        }
        for (key, value) in [
            (&b",\"image\":"[..], &self.image),
            (b",\"buttons\":", &self.buttons),
            (b",\"attachment\":", &self.attachment),
            (b",\"custom\":", &self.custom),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(key);
                serde_json::to_writer(&mut *out, value)?;
            }
        }
        out.push(b'}');
        Ok(())
    }

    fn new(recipient_id: &str) -> ChannelMessage {
        ChannelMessage {
            recipient_id: recipient_id.to_string(),
            text: None,
            image: None,
            buttons: None,
            attachment: None,
            custom: None,
        }
    }

    fn text(recipient_id: &str, text: String) -> ChannelMessage {
        ChannelMessage {
            text: Some(text),
            ..ChannelMessage::new(recipient_id)
        }
    }

    /// The message as the JSON object a channel sends.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A list of messages as JSON (`[...]`, see [`ChannelMessage::write_json`]).
pub fn messages_json(messages: &[ChannelMessage]) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + messages.len() * 160);
    out.push(b'[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        message.write_json(&mut out)?;
    }
    out.push(b']');
    Ok(out)
}

/// The messages one `bot` event becomes on the REST/callback channels and in `messages` of
/// `/execute` and `/trigger_intent`.
pub fn channel_messages(recipient_id: &str, bot: &Event) -> Vec<ChannelMessage> {
    let EventKind::Bot { text, data } = &bot.kind else {
        return Vec::new();
    };
    let get = |k: &str| data.get(k).filter(|v| !is_empty(v)).cloned();
    let mut out = Vec::new();
    let buttons = get("buttons").or_else(|| get("quick_replies"));
    match (text, buttons) {
        (Some(t), Some(b)) => out.push(ChannelMessage {
            buttons: Some(b),
            ..ChannelMessage::text(recipient_id, t.clone())
        }),
        (None, Some(b)) => out.push(ChannelMessage {
            buttons: Some(b),
            ..ChannelMessage::text(recipient_id, String::new())
        }),
        (Some(t), None) => {
            for part in t
                .trim()
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                out.push(ChannelMessage::text(recipient_id, part.to_string()));
            }
        }
        (None, None) => {}
    }
    if let Some(c) = get("custom") {
        out.push(ChannelMessage {
            custom: Some(c),
            ..ChannelMessage::new(recipient_id)
        });
    }
    if let Some(i) = get("image") {
        out.push(ChannelMessage {
            image: Some(i),
            ..ChannelMessage::new(recipient_id)
        });
    }
    if let Some(a) = get("attachment") {
        out.push(ChannelMessage {
            attachment: Some(a),
            ..ChannelMessage::new(recipient_id)
        });
    }
    if let Some(Value::Array(elements)) = get("elements") {
        for el in elements {
            let title = el.get("title").and_then(Value::as_str).unwrap_or("");
            let subtitle = el.get("subtitle").and_then(Value::as_str).unwrap_or("");
            out.push(ChannelMessage {
                buttons: el.get("buttons").cloned(),
                ..ChannelMessage::text(recipient_id, format!("{title} : {subtitle}"))
            });
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A bot event from a rendered message (a response variation or an action server's
/// response): `text` and the six data keys Rasa always writes.
pub fn bot_event(message: Map<String, Value>, utter_action: Option<&str>) -> Event {
    let (text, data) = BotData::split_message(message);
    let text = match text {
        Some(Value::String(t)) => Some(t),
        _ => None,
    };
    let mut e = Event::new(EventKind::Bot { text, data });
    if let Some(u) = utter_action {
        // Room for the model stamp that follows (`Event::stamp`): no regrowth.
        let mut metadata = Map::with_capacity(3);
        metadata.insert("utter_action".into(), json!(u));
        e.metadata = std::sync::Arc::new(metadata);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written JSON is the derive's, for every field, escapes and non-ASCII text.
    #[test]
    fn written_json_is_serde_jsons() {
        let full = ChannelMessage {
            recipient_id: "u\"1".into(),
            text: Some("Hi!\n\"quoted\" \\ café \u{1}".into()),
            image: Some(json!("https://x/y.png")),
            buttons: Some(json!([{"title": "Yes", "payload": "/affirm"}])),
            attachment: Some(json!({"k": [1, 2.5, null]})),
            custom: Some(json!({"é": "\t"})),
        };
        let cases = vec![
            vec![],
            vec![ChannelMessage::text("u", "Hello! I'm the bot.".into())],
            vec![ChannelMessage::new("u")],
            vec![full.clone(), ChannelMessage::text("v", String::new())],
            vec![ChannelMessage { text: None, ..full }],
        ];
        for messages in cases {
            assert_eq!(
                String::from_utf8(messages_json(&messages).unwrap()).unwrap(),
                serde_json::to_string(&messages).unwrap()
            );
        }
    }

    #[test]
    fn shapes() {
        let m = serde_json::from_value(
            json!({"text": "Hi!\n\nHow are you?", "image": "https://x/y.png"}),
        )
        .unwrap();
        let e = bot_event(m, Some("utter_greet"));
        let values: Vec<Value> = channel_messages("u", &e)
            .iter()
            .map(ChannelMessage::to_value)
            .collect();
        assert_eq!(
            values,
            vec![
                json!({"recipient_id": "u", "text": "Hi!"}),
                json!({"recipient_id": "u", "text": "How are you?"}),
                json!({"recipient_id": "u", "image": "https://x/y.png"})
            ]
        );
        let m = serde_json::from_value(
            json!({"text": "Pick", "buttons": [{"title": "a", "payload": "/a"}]}),
        )
        .unwrap();
        assert_eq!(
            channel_messages("u", &bot_event(m, None))[0].to_value()["buttons"][0]["payload"],
            "/a"
        );
    }
}
