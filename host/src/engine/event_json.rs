//! An event's JSON text, written straight into a buffer: the one definition of how 3.6
//! serialises events (the `Serialize` impl of [`Event`] is made from it). Key order is 3.6's:
//! `event`, `timestamp`, `metadata` (always for `user`/`bot`, else only when non-empty), then
//! the type's fields.
//!
//! Written by hand because every event a conversation gets is written once, on the request
//! path: keys are constant bytes here, where serde's map serialiser escapes each key like a
//! value; and the model stamp most events share as their metadata is written once per thread,
//! then copied.

use std::cell::RefCell;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::event::{Event, EventKind, IntentRanking, Metadata, RankedIntent};

/// `,"name":` as bytes, for a constant key that needs no escaping.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Appends the event's JSON text to `out`.
pub(crate) fn write_event(e: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"event\":");
    string(out, e.type_name())?;
    out.extend_from_slice(key!("timestamp"));
    float(out, e.timestamp)?;
    let always_metadata = matches!(e.kind, EventKind::User { .. } | EventKind::Bot { .. });
    if always_metadata || !e.metadata.is_empty() {
        out.extend_from_slice(key!("metadata"));
        metadata(out, &e.metadata)?;
    }
    match &e.kind {
        EventKind::User {
            text,
            parse_data,
            input_channel,
            message_id,
            intent_ranking,
        } => {
            opt_string_field(out, key!("text"), text)?;
            out.extend_from_slice(key!("parse_data"));
            write_parse_data(out, text, parse_data, message_id, intent_ranking.as_ref())?;
            opt_string_field(out, key!("input_channel"), input_channel)?;
            opt_string_field(out, key!("message_id"), message_id)?;
        }
        EventKind::Bot { text, data } => {
            opt_string_field(out, key!("text"), text)?;
            out.extend_from_slice(key!("data"));
            data.write(out)?;
        }
        EventKind::Agent { text, data } => {
            opt_string_field(out, key!("text"), text)?;
            value_field(out, key!("data"), data)?;
        }
        EventKind::Slot { name, value } => {
            string_field(out, key!("name"), name)?;
            value_field(out, key!("value"), value)?;
        }
        EventKind::Reminder {
            intent,
            entities,
            date_time,
            name,
            kill_on_user_msg,
        } => {
            string_field(out, key!("intent"), intent)?;
            string_field(out, key!("date_time"), date_time)?;
            value_field(out, key!("entities"), entities)?;
            string_field(out, key!("name"), name)?;
            bool_field(out, key!("kill_on_user_msg"), *kill_on_user_msg);
        }
        EventKind::Followup { name } => string_field(out, key!("name"), name)?,
        EventKind::Action {
            name,
            policy,
            confidence,
            action_text,
            hide_rule_turn,
        } => {
            opt_string_field(out, key!("name"), name)?;
            opt_string_field(out, key!("policy"), policy)?;
            opt_float_field(out, key!("confidence"), *confidence)?;
            opt_string_field(out, key!("action_text"), action_text)?;
            bool_field(out, key!("hide_rule_turn"), *hide_rule_turn);
        }
        EventKind::ActiveLoop { name } => opt_string_field(out, key!("name"), name)?,
        EventKind::LoopInterrupted { is_interrupted } => {
            bool_field(out, key!("is_interrupted"), *is_interrupted)
        }
        EventKind::ActionExecutionRejected {
            name,
            policy,
            confidence,
        } => {
            opt_string_field(out, key!("name"), name)?;
            opt_string_field(out, key!("policy"), policy)?;
            opt_float_field(out, key!("confidence"), *confidence)?;
        }
        EventKind::Entities { entities } => {
            out.extend_from_slice(key!("entities"));
            serde_json::to_writer(&mut *out, entities)?;
        }
        EventKind::UserFeaturization {
            use_text_for_featurization,
        } => bool_field(
            out,
            key!("use_text_for_featurization"),
            *use_text_for_featurization,
        ),
        // Their fields (a cancelled reminder's filters, an export's path) are not written,
        // as in 3.6.
        EventKind::Restart
        | EventKind::Rewind
        | EventKind::Undo
        | EventKind::ResetSlots
        | EventKind::CancelReminder { .. }
        | EventKind::Export { .. }
        | EventKind::Pause
        | EventKind::Resume
        | EventKind::SessionStarted => {}
    }
    out.push(b'}');
    Ok(())
}

/// A user event's parse data in 3.6's shape (see [`Event::user_parse_data`]): `intent`,
/// `entities`, `text`, `message_id`, `metadata` first (defaults for those missing), then the
/// map's other keys in order, then a typed intent ranking (whose first entry is then the
/// intent).
fn write_parse_data(
    out: &mut Vec<u8>,
    text: &Option<String>,
    parse_data: &Map<String, Value>,
    message_id: &Option<String>,
    intent_ranking: Option<&IntentRanking>,
) -> serde_json::Result<()> {
    const FIRST: [&str; 5] = ["intent", "entities", "text", "message_id", "metadata"];
    // A parse result has a handful of keys: a scan compares fewer bytes than hashing each key.
    let get = |key: &str| match parse_data.len() {
        0..=8 => parse_data.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
        _ => parse_data.get(key),
    };
    for (i, key) in FIRST.into_iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match (key, get(key)) {
            ("intent", None) if intent_ranking.is_some() => {
                match intent_ranking.and_then(IntentRanking::top) {
                    Some(top) => ranked_intent(out, top)?,
                    // Rasa's empty intent, as the ranking defines it (rare: the interpreter
                    // gives a text without any intent Rasa's empty parse instead).
                    None => value(out, &IntentRanking::default().intent_value())?,
                }
            }
            ("intent", None | Some(Value::Null)) => out.extend_from_slice(b"{}"),
            ("entities", None | Some(Value::Null)) => out.extend_from_slice(b"[]"),
            (_, Some(v)) => value(out, v)?,
            ("text", None) => opt_string(out, text)?,
            ("message_id", None) => opt_string(out, message_id)?,
            (_, None) => out.extend_from_slice(b"{}"),
        }
    }
    for (k, v) in parse_data {
        if !FIRST.contains(&k.as_str()) {
            out.push(b',');
            string(out, k)?;
            out.push(b':');
            value(out, v)?;
        }
    }
    if let Some(ranking) = intent_ranking {
        out.extend_from_slice(key!("intent_ranking"));
        out.push(b'[');
        for (i, r) in ranking.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            ranked_intent(out, r)?;
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(())
}

/// `{"name", "confidence"}`, as `RankedIntent::to_value` would be written.
fn ranked_intent(out: &mut Vec<u8>, r: &RankedIntent) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"name\":");
    string(out, &r.name)?;
    out.extend_from_slice(key!("confidence"));
    float(out, r.confidence)?;
    out.push(b'}');
    Ok(())
}

thread_local! {
    /// The last shared metadata written on this thread and its text. Nearly every new event's
    /// metadata is the serving model's stamp, one map shared by all of them.
    static SHARED_METADATA: RefCell<Option<(Metadata, Vec<u8>)>> = const { RefCell::new(None) };
}

fn metadata(out: &mut Vec<u8>, m: &Metadata) -> serde_json::Result<()> {
    // A map of the event's own is written directly: it is not seen again.
    if Arc::strong_count(m) == 1 {
        return object(out, m.iter());
    }
    SHARED_METADATA.with_borrow_mut(|last| {
        if let Some((held, text)) = last.as_ref() {
            if Arc::ptr_eq(held, m) {
                out.extend_from_slice(text);
                return Ok(());
            }
        }
        // Holding the `Arc` keeps the pointer from being reused by another map.
        let mut text = Vec::new();
        object(&mut text, m.iter())?;
        out.extend_from_slice(&text);
        *last = Some((m.clone(), text));
        Ok(())
    })
}

/// A JSON string. Most texts (names, intents, ids, a bot's sentence) contain nothing to escape:
/// they are copied between quotes after one pass that the compiler vectorises, where
/// serde_json's escaper looks each byte up in a table (~200 instructions a string, 7 % of a
/// REST turn's). The output is serde_json's either way: it escapes exactly the control
/// characters, `"` and `\`.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    let bytes = s.as_bytes();
    // No early exit, so that the loop stays branch-free and vectorises.
    let needs_escape = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        return serde_json::to_writer(&mut *out, s);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

pub(super) fn opt_string(out: &mut Vec<u8>, s: &Option<String>) -> serde_json::Result<()> {
    match s {
        Some(s) => string(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// A float as Python prints it: integral values keep their `.0` (serde_json's float
/// formatting); non-finite ones are `null`.
pub(super) fn float(out: &mut Vec<u8>, x: f64) -> serde_json::Result<()> {
    if x.is_finite() {
        serde_json::to_writer(&mut *out, &x)
    } else {
        out.extend_from_slice(b"null");
        Ok(())
    }
}

/// Any JSON value, byte for byte as serde_json's compact writer writes it (tested against it),
/// with strings and keys through [`string`]: serde_json escapes them byte by byte through a
/// table, a bot event's `data` and its own metadata map ~1.7k instructions a REST turn.
/// Numbers are serde_json's own writing.
pub(super) fn value(out: &mut Vec<u8>, v: &Value) -> serde_json::Result<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => serde_json::to_writer(&mut *out, n)?,
        Value::String(s) => string(out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => object(out, map)?,
    }
    Ok(())
}

/// A JSON object of `entries` (a map, or pairs whose keys are unique), as [`value`] writes it.
pub(super) fn object<'a, K: AsRef<str> + 'a>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'a K, &'a Value)>,
) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k.as_ref())?;
        out.push(b':');
        value(out, v)?;
    }
    out.push(b'}');
    Ok(())
}

/// `,"key":` then the value: one field of an event.
fn string_field(out: &mut Vec<u8>, key: &[u8], s: &str) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    string(out, s)
}

fn opt_string_field(out: &mut Vec<u8>, key: &[u8], s: &Option<String>) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    opt_string(out, s)
}

fn value_field(out: &mut Vec<u8>, key: &[u8], v: &Value) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    value(out, v)
}

fn opt_float_field(out: &mut Vec<u8>, key: &[u8], x: Option<f64>) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    opt_float(out, x)
}

pub(super) fn opt_float(out: &mut Vec<u8>, x: Option<f64>) -> serde_json::Result<()> {
    match x {
        Some(x) => float(out, x),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

pub(super) fn bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn bool_field(out: &mut Vec<u8>, key: &[u8], b: bool) {
    out.extend_from_slice(key);
    bool(out, b);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::event::{model_stamp, Event};

    /// Strings are written byte for byte as serde_json writes them, escaped or not.
    #[test]
    fn strings_are_serde_jsons_strings() {
        let mut samples: Vec<String> = [
            "",
            "hello",
            "Hello! I'm the Colloquy café bot.",
            "quote \" inside",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{0}\u{1f}\u{7f}\u{80}",
            "日本語 🎉",
            "/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every byte value below 0x80 at every position of a 40-byte text (the vectorised
        // check runs over whole blocks and a tail).
        for b in 0u8..0x80 {
            for at in [0, 15, 16, 31, 32, 39] {
                let mut t = "a".repeat(40);
                t.replace_range(at..at + 1, &char::from(b).to_string());
                samples.push(t);
            }
        }
        for s in &samples {
            let mut ours = Vec::new();
            super::string(&mut ours, s).unwrap();
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    /// Values are written byte for byte as serde_json writes them: every kind, nested, with
    /// keys and strings that need escaping, and numbers of every representation.
    #[test]
    fn values_are_serde_jsons_values() {
        let samples = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-17),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.0),
            json!(-0.0),
            json!(0.1),
            json!(1e300),
            json!(1.5e-7),
            json!(1795952987.5209773),
            json!(""),
            json!("caf\u{e9} \"q\" \n \u{1}"),
            json!([]),
            json!({}),
            json!([1, "2", [3, [4, {}]], {"a": null}]),
            json!({"elements": null, "quick_replies": null, "buttons": [{"title": "Yes", "payload": "/affirm"}], "attachment": null, "image": null, "custom": {"k\"ey": "v\\", "ü": [true, false]}}),
            json!({"z": 1, "a": 2, "m": {"y": [], "b": {}}}),
        ];
        for v in &samples {
            let mut ours = Vec::new();
            super::value(&mut ours, v).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(v).unwrap()
            );
        }
    }

    /// Every event type in the form 3.6 writes it (compact, its key order, its floats): read
    /// and written again, the text must be the same bytes.
    #[test]
    fn every_event_type_is_written_as_36_writes_it() {
        let texts = [
            r#"{"event":"user","timestamp":1.5,"metadata":{"a":[1,2.5,null]},"text":"hé \"q\"\n","parse_data":{"intent":{"name":"greet","confidence":0.25},"entities":[{"entity":"e","start":0,"end":2,"value":"hé"}],"text":"hé","message_id":"m","metadata":{},"text_tokens":[[0,2]],"intent_ranking":[{"name":"greet","confidence":0.25}],"response_selector":{}},"input_channel":"rest","message_id":"m"}"#,
            r#"{"event":"user","timestamp":2.0,"metadata":{},"text":null,"parse_data":{"intent":{},"entities":[],"text":null,"message_id":null,"metadata":{}},"input_channel":null,"message_id":null}"#,
            r#"{"event":"bot","timestamp":3.0,"metadata":{"utter_action":"utter_x"},"text":"t","data":{"elements":null,"quick_replies":null,"buttons":[{"title":"a","payload":"/a"}],"attachment":null,"image":null,"custom":null}}"#,
            r#"{"event":"agent","timestamp":3.0,"text":null,"data":{}}"#,
            r#"{"event":"slot","timestamp":4.0,"name":"s","value":{"k":[1,"2",true]}}"#,
            r#"{"event":"slot","timestamp":4.0,"metadata":{"m":1},"name":"s","value":null}"#,
            r#"{"event":"restart","timestamp":5.0}"#,
            r#"{"event":"rewind","timestamp":5.0}"#,
            r#"{"event":"undo","timestamp":5.0}"#,
            r#"{"event":"reset_slots","timestamp":5.0}"#,
            r#"{"event":"reminder","timestamp":6.0,"intent":"i","date_time":"2026-01-01T00:00:00","entities":[{"entity":"e","value":1}],"name":"r","kill_on_user_msg":false}"#,
            r#"{"event":"cancel_reminder","timestamp":6.0}"#,
            r#"{"event":"export","timestamp":6.0}"#,
            r#"{"event":"followup","timestamp":7.0,"name":"action_x"}"#,
            r#"{"event":"pause","timestamp":7.0}"#,
            r#"{"event":"resume","timestamp":7.0}"#,
            r#"{"event":"action","timestamp":8.0,"name":"utter_greet","policy":"RulePolicy","confidence":1.0,"action_text":null,"hide_rule_turn":true}"#,
            r#"{"event":"action","timestamp":8.0,"name":"action_listen","policy":null,"confidence":null,"action_text":"t","hide_rule_turn":false}"#,
            r#"{"event":"active_loop","timestamp":9.0,"name":null}"#,
            r#"{"event":"loop_interrupted","timestamp":9.0,"is_interrupted":true}"#,
            r#"{"event":"action_execution_rejected","timestamp":9.0,"name":"a","policy":null,"confidence":0.5}"#,
            r#"{"event":"session_started","timestamp":10.0}"#,
            r#"{"event":"entities","timestamp":10.0,"entities":[{"entity":"e","value":"v"}]}"#,
            r#"{"event":"user_featurization","timestamp":10.0,"use_text_for_featurization":false}"#,
        ];
        for text in texts {
            let e = Event::from_json(&serde_json::from_str(text).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(e.to_json_string(), text);
            // The `Serialize` impl is the same text, for writers and for `Value`.
            assert_eq!(serde_json::to_string(&e).unwrap(), text);
            assert_eq!(
                e.to_json(),
                serde_json::from_str::<serde_json::Value>(text).unwrap()
            );
        }
    }

    #[test]
    fn shared_metadata_is_written_from_its_remembered_text_only_while_it_is_the_same_map() {
        let stamp = model_stamp("m1", "bot");
        let other = model_stamp("m2", "bot");
        let mut e = Event::action("action_listen");
        e.timestamp = 1.0;
        let with = |m: &super::Metadata| {
            let mut e = e.clone();
            e.metadata = m.clone();
            e.to_json_string()
        };
        let expected = |id: &str| {
            format!(
                r#"{{"event":"action","timestamp":1.0,"metadata":{{"model_id":"{id}","assistant_id":"bot"}},"name":"action_listen","policy":null,"confidence":null,"action_text":null,"hide_rule_turn":false}}"#
            )
        };
        for _ in 0..2 {
            assert_eq!(with(&stamp), expected("m1"));
            assert_eq!(with(&other), expected("m2"));
        }
        // An event's own copy, changed, is written as it now is.
        let mut own = e.clone();
        own.metadata = stamp.clone();
        std::sync::Arc::make_mut(&mut own.metadata).insert("x".into(), json!(1));
        assert!(own
            .to_json_string()
            .contains(r#""metadata":{"model_id":"m1","assistant_id":"bot","x":1}"#));
        assert_eq!(with(&stamp), expected("m1"));
        // Non-finite floats are null, as in 3.6.
        e.timestamp = f64::NAN;
        assert!(e
            .to_json_string()
            .starts_with(r#"{"event":"action","timestamp":null,"#));
    }
}
