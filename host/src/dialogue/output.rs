//! Bot messages as channels deliver them (rasa-endpoints §8.3): `{recipient_id, text, …}`.

use serde_json::{json, Map, Value};

use crate::engine::{Event, EventKind};

/// The message dicts one `bot` event becomes on the REST/callback channels and in
/// `messages` of `/execute` and `/trigger_intent`.
pub fn channel_messages(recipient_id: &str, bot: &Event) -> Vec<Value> {
    let EventKind::Bot { text, data } = &bot.kind else {
        return Vec::new();
    };
    let get = |k: &str| {
        data.get(k)
            .filter(|v| !v.is_null() && !is_empty(v))
            .cloned()
    };
    let mut out = Vec::new();
    let buttons = get("buttons").or_else(|| get("quick_replies"));
    match (text, buttons) {
        (Some(t), Some(b)) => {
            out.push(json!({"recipient_id": recipient_id, "text": t, "buttons": b}))
        }
        (None, Some(b)) => {
            out.push(json!({"recipient_id": recipient_id, "text": "", "buttons": b}))
        }
        (Some(t), None) => {
            for part in t
                .trim()
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                out.push(json!({"recipient_id": recipient_id, "text": part}));
            }
        }
        (None, None) => {}
    }
    if let Some(c) = get("custom") {
        out.push(json!({"recipient_id": recipient_id, "custom": c}));
    }
    if let Some(i) = get("image") {
        out.push(json!({"recipient_id": recipient_id, "image": i}));
    }
    if let Some(a) = get("attachment") {
        out.push(json!({"recipient_id": recipient_id, "attachment": a}));
    }
    if let Some(Value::Array(elements)) = get("elements") {
        for el in elements {
            let title = el.get("title").and_then(Value::as_str).unwrap_or("");
            let subtitle = el.get("subtitle").and_then(Value::as_str).unwrap_or("");
            let mut m = Map::new();
            m.insert("recipient_id".into(), json!(recipient_id));
            m.insert("text".into(), json!(format!("{title} : {subtitle}")));
            if let Some(b) = el.get("buttons") {
                m.insert("buttons".into(), b.clone());
            }
            out.push(Value::Object(m));
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
pub fn bot_event(mut message: Map<String, Value>, utter_action: Option<&str>) -> Event {
    // Taken apart rather than copied: the message is the caller's to give.
    let text = match message.remove("text") {
        Some(Value::String(t)) => Some(t),
        _ => None,
    };
    let mut data = Map::with_capacity(6);
    for key in [
        "elements",
        "quick_replies",
        "buttons",
        "attachment",
        "image",
        "custom",
    ] {
        data.insert(key.into(), message.remove(key).unwrap_or(Value::Null));
    }
    let mut e = Event::new(EventKind::Bot {
        text,
        data: Value::Object(data),
    });
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

    #[test]
    fn shapes() {
        let m = serde_json::from_value(
            json!({"text": "Hi!\n\nHow are you?", "image": "https://x/y.png"}),
        )
        .unwrap();
        let e = bot_event(m, Some("utter_greet"));
        assert_eq!(
            channel_messages("u", &e),
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
            channel_messages("u", &bot_event(m, None))[0]["buttons"][0]["payload"],
            "/a"
        );
    }
}
