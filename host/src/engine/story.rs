//! `GET …/story`: a conversation as Rasa 3.6 YAML test stories.

use serde_json::Value;

use super::event::{Event, EventKind};
use super::tracker::{truncate_until, ACTION_LISTEN, ACTION_SESSION_START};

const SKIPPED_ACTIONS: [&str; 3] = [
    ACTION_LISTEN,
    ACTION_SESSION_START,
    "action_unlikely_intent",
];

/// Splits events into sessions at each `action_session_start`.
pub fn sessions(events: &[Event]) -> Vec<&[Event]> {
    let mut starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_action(ACTION_SESSION_START))
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(events.len());
        if s < end {
            out.push(&events[s..end]);
        }
    }
    out
}

/// The YAML story document. Only the latest session unless `all_sessions`; `until` applies
/// per session and empty sessions are dropped.
pub fn story_yaml(
    sender_id: &str,
    events: &[Event],
    all_sessions: bool,
    until: Option<f64>,
) -> String {
    let mut chosen: Vec<&[Event]> = sessions(events);
    if !all_sessions {
        chosen = chosen.into_iter().last().into_iter().collect();
    }
    let chosen: Vec<Vec<String>> = chosen
        .into_iter()
        .map(|s| steps(truncate_until(s, until)))
        .filter(|steps| !steps.is_empty())
        .collect();
    let mut out = String::from("version: \"3.1\"\n");
    if chosen.is_empty() {
        return out;
    }
    out.push_str("stories:\n");
    let numbered = chosen.len() > 1;
    for (i, steps) in chosen.iter().enumerate() {
        let title = if numbered {
            format!("{sender_id}, story {}", i + 1)
        } else {
            sender_id.to_string()
        };
        out.push_str(&format!(
            "- story: {}\n  steps:\n",
            yaml_scalar(&Value::String(title))
        ));
        for step in steps {
            out.push_str(step);
        }
    }
    out
}

fn steps(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::User {
                text, parse_data, ..
            } => {
                let intent = e.intent_name();
                let mut step = String::new();
                match intent {
                    Some(i) => step.push_str(&format!(
                        "  - intent: {}\n",
                        yaml_scalar(&Value::String(i.into()))
                    )),
                    None if text.is_none() => continue,
                    None => {}
                }
                if let Some(t) = text {
                    let marked = annotate(t, parse_data.get("entities"));
                    let prefix = if intent.is_some() {
                        "    user: |-\n"
                    } else {
                        "  - user: |-\n"
                    };
                    step.push_str(prefix);
                    for line in marked.split('\n') {
                        step.push_str(&format!("      {line}\n"));
                    }
                }
                out.push(step);
            }
            EventKind::Action { name: Some(n), .. } if !SKIPPED_ACTIONS.contains(&n.as_str()) => {
                out.push(format!(
                    "  - action: {}\n",
                    yaml_scalar(&Value::String(n.clone()))
                ));
            }
            EventKind::Slot { name, value } => {
                out.push(format!(
                    "  - slot_was_set:\n    - {}: {}\n",
                    yaml_scalar(&Value::String(name.clone())),
                    yaml_scalar(value)
                ));
            }
            EventKind::ActiveLoop { name } => {
                let v = name.clone().map(Value::String).unwrap_or(Value::Null);
                out.push(format!("  - active_loop: {}\n", yaml_scalar(&v)));
            }
            _ => {}
        }
    }
    out
}

/// Inline entity markup: `[Rome]{"entity": "city"}` (plus `"value"` when it differs).
fn annotate(text: &str, entities: Option<&Value>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for ent in entities.and_then(Value::as_array).into_iter().flatten() {
        let (Some(start), Some(end), Some(name)) = (
            ent.get("start").and_then(Value::as_u64),
            ent.get("end").and_then(Value::as_u64),
            ent.get("entity").and_then(Value::as_str),
        ) else {
            continue;
        };
        let (start, end) = (start as usize, end as usize);
        if start >= end || end > chars.len() || spans.iter().any(|(s, e, _)| start < *e && *s < end)
        {
            continue;
        }
        let covered: String = chars[start..end].iter().collect();
        let mut attrs = vec![format!("\"entity\": {}", Value::String(name.into()))];
        for key in ["role", "group"] {
            if let Some(v) = ent.get(key).and_then(Value::as_str) {
                attrs.push(format!("\"{key}\": {}", Value::String(v.into())));
            }
        }
        if let Some(v) = ent.get("value") {
            if v.as_str() != Some(covered.as_str()) {
                attrs.push(format!("\"value\": {v}"));
            }
        }
        spans.push((start, end, format!("[{covered}]{{{}}}", attrs.join(", "))));
    }
    spans.sort_by_key(|s| s.0);
    let mut out = String::new();
    let mut pos = 0;
    for (s, e, markup) in spans {
        out.extend(&chars[pos..s]);
        out.push_str(&markup);
        pos = e;
    }
    out.extend(&chars[pos..]);
    out
}

/// A YAML scalar on one line: plain when safe, otherwise JSON (valid YAML flow syntax).
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain_safe = !s.is_empty()
                && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
                && !s.ends_with(' ')
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.contains('\n')
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off"
                )
                && s.parse::<f64>().is_err();
            if plain_safe {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_story_is_reproduced() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/captured-3.6.21/"
        );
        let tracker: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}tracker-ALL.json")).unwrap(),
        )
        .unwrap();
        let events = Event::list_from_json(tracker["events"].as_array().unwrap()).unwrap();
        let expected = std::fs::read_to_string(format!("{dir}story.txt")).unwrap();
        assert_eq!(story_yaml("sample-conv2", &events, false, None), expected);
        let expected = std::fs::read_to_string(format!("{dir}story-all-sessions.txt")).unwrap();
        assert_eq!(story_yaml("sample-conv2", &events, true, None), expected);
        let tracker: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}conv1-tracker-ALL.json")).unwrap(),
        )
        .unwrap();
        let events = Event::list_from_json(tracker["events"].as_array().unwrap()).unwrap();
        let expected = std::fs::read_to_string(format!("{dir}conv1-story.txt")).unwrap();
        assert_eq!(story_yaml("sample-conv", &events, false, None), expected);
    }

    #[test]
    fn empty_and_entities() {
        assert_eq!(story_yaml("x", &[], false, None), "version: \"3.1\"\n");
        let e = serde_json::json!({"entities": [{"entity": "city", "value": "Rome", "start": 16, "end": 20}]});
        assert_eq!(
            annotate("book a table in Rome", e.get("entities")),
            "book a table in [Rome]{\"entity\": \"city\"}"
        );
    }
}
