//! Rasa events: parsing with 3.6's validation rules, and serialisation that reproduces 3.6's
//! JSON exactly (key order, nulls, the fields each type always carries).
//!
//! Every 0.x and 3.6 event name is accepted; the legacy `form` and `form_validation` are
//! stored as their 3.6 forms `active_loop` and `loop_interrupted`, as 3.6 re-emits them.

use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use super::bot_data::BotData;
use thiserror::Error;

/// Why an event was refused. Always a client error (HTTP 400).
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{0}")]
pub struct EventError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, EventError> {
    Err(EventError(msg.into()))
}

/// What an event is, with its type-specific fields.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    User {
        text: Option<String>,
        parse_data: Map<String, Value>,
        input_channel: Option<String>,
        message_id: Option<String>,
        /// The embedded NLU's `intent_ranking`, kept typed rather than as a list of maps in
        /// `parse_data` (building, writing and freeing those maps was ~5 % of a REST turn).
        /// When set, `parse_data` has neither an `intent_ranking` key nor an `intent` key: the
        /// ranking is part of the parse data after its other keys (where the NLU puts it), and
        /// the intent is its first entry ([`IntentRanking::intent_value`]). Events read from
        /// JSON keep both in `parse_data`, as given.
        intent_ranking: Option<IntentRanking>,
    },
    Bot {
        text: Option<String>,
        data: BotData,
    },
    Slot {
        name: String,
        value: Value,
    },
    Restart,
    /// `rewind`: the last user utterance is reverted.
    Rewind,
    /// `undo`: the last action is reverted.
    Undo,
    ResetSlots,
    Reminder {
        intent: String,
        entities: Value,
        date_time: String,
        name: String,
        kill_on_user_msg: bool,
    },
    /// Its filter fields are not serialised (as in 3.6), but kept for the side effect.
    CancelReminder {
        name: Option<String>,
        intent: Option<String>,
        entities: Value,
    },
    Export {
        path: Option<String>,
    },
    Followup {
        name: String,
    },
    Pause,
    Resume,
    Action {
        name: Option<String>,
        policy: Option<String>,
        confidence: Option<f64>,
        action_text: Option<String>,
        hide_rule_turn: bool,
    },
    Agent {
        text: Option<String>,
        data: Value,
    },
    ActiveLoop {
        name: Option<String>,
    },
    LoopInterrupted {
        is_interrupted: bool,
    },
    ActionExecutionRejected {
        name: Option<String>,
        policy: Option<String>,
        confidence: Option<f64>,
    },
    SessionStarted,
    Entities {
        entities: Vec<Value>,
    },
    UserFeaturization {
        use_text_for_featurization: bool,
    },
}

/// One event of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub timestamp: f64,
    pub metadata: Metadata,
    pub kind: EventKind,
}

/// An event's `metadata`. Shared rather than owned: nearly every new event carries exactly the
/// serving model's stamp (`model_id`, `assistant_id`), so those events hold one map per model
/// instead of a map of their own each (two maps and six allocations fewer per event kept).
/// Changed with `Arc::make_mut`, which copies a shared map first.
pub type Metadata = Arc<Map<String, Value>>;

/// A `user` event's `intent_ranking` as the embedded NLU makes it: best first, written as
/// `[{"name", "confidence"}, …]`. Names are shared with the model (no copy per message).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IntentRanking(pub Vec<RankedIntent>);

#[derive(Debug, Clone, PartialEq)]
pub struct RankedIntent {
    pub name: Arc<str>,
    pub confidence: f64,
}

impl IntentRanking {
    /// The best intent, the parse's `intent`.
    pub fn top(&self) -> Option<&RankedIntent> {
        self.0.first()
    }

    /// The parse's `intent` as JSON: the best entry, or Rasa's empty intent for a parse that
    /// ranked none.
    pub fn intent_value(&self) -> Value {
        match self.top() {
            Some(top) => top.to_value(),
            None => serde_json::json!({"name": null, "confidence": 0.0}),
        }
    }

    /// The ranking as the JSON `parse_data` holds it elsewhere.
    pub fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(RankedIntent::to_value).collect())
    }
}

impl RankedIntent {
    /// `{"name", "confidence"}`; a non-finite confidence is `null`, as `serde_json` has it.
    pub fn to_value(&self) -> Value {
        let mut m = Map::with_capacity(2);
        m.insert("name".into(), Value::String(self.name.to_string()));
        m.insert("confidence".into(), Value::from(self.confidence));
        Value::Object(m)
    }
}

/// The empty metadata, shared.
pub fn no_metadata() -> Metadata {
    static EMPTY: LazyLock<Metadata> = LazyLock::new(Metadata::default);
    EMPTY.clone()
}

/// The metadata 3.6 stamps into every new event while a model is loaded.
pub fn model_stamp(model_id: &str, assistant_id: &str) -> Metadata {
    let mut m = Map::with_capacity(2);
    m.insert("model_id".into(), Value::String(model_id.into()));
    m.insert("assistant_id".into(), Value::String(assistant_id.into()));
    Arc::new(m)
}

/// The current time in epoch seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Event {
    pub fn new(kind: EventKind) -> Event {
        Event {
            timestamp: now(),
            metadata: no_metadata(),
            kind,
        }
    }

    pub fn action(name: &str) -> Event {
        Event::new(EventKind::Action {
            name: Some(name.into()),
            policy: None,
            confidence: None,
            action_text: None,
            hide_rule_turn: false,
        })
    }

    pub fn action_with(name: &str, policy: Option<&str>, confidence: Option<f64>) -> Event {
        Event::new(EventKind::Action {
            name: Some(name.into()),
            policy: policy.map(Into::into),
            confidence,
            action_text: None,
            hide_rule_turn: false,
        })
    }

    /// The 3.6 type name.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            EventKind::User { .. } => "user",
            EventKind::Bot { .. } => "bot",
            EventKind::Slot { .. } => "slot",
            EventKind::Restart => "restart",
            EventKind::Rewind => "rewind",
            EventKind::Undo => "undo",
            EventKind::ResetSlots => "reset_slots",
            EventKind::Reminder { .. } => "reminder",
            EventKind::CancelReminder { .. } => "cancel_reminder",
            EventKind::Export { .. } => "export",
            EventKind::Followup { .. } => "followup",
            EventKind::Pause => "pause",
            EventKind::Resume => "resume",
            EventKind::Action { .. } => "action",
            EventKind::Agent { .. } => "agent",
            EventKind::ActiveLoop { .. } => "active_loop",
            EventKind::LoopInterrupted { .. } => "loop_interrupted",
            EventKind::ActionExecutionRejected { .. } => "action_execution_rejected",
            EventKind::SessionStarted => "session_started",
            EventKind::Entities { .. } => "entities",
            EventKind::UserFeaturization { .. } => "user_featurization",
        }
    }

    pub fn action_name(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Action { name, .. } => name.as_deref(),
            _ => None,
        }
    }

    pub fn is_action(&self, wanted: &str) -> bool {
        self.action_name() == Some(wanted)
    }

    /// [`Self::from_json`] of one event's JSON text (as stores and caches keep them).
    pub fn from_json_text(text: &str) -> Result<Option<Event>, EventError> {
        if let Ok(object) = serde_json::from_str::<FlatObject<'_>>(text) {
            return Event::from_object(&object);
        }
        // Not an object, or not JSON: the general way names what is wrong.
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError(format!("not JSON: {e}")))?;
        Event::from_json(&value)
    }

    /// Parses one event object. `Ok(None)` for the legacy `topic` event, which Rasa ignores.
    pub fn from_json(value: &Value) -> Result<Option<Event>, EventError> {
        let Some(obj) = value.as_object() else {
            return err(format!(
                "an event must be a JSON object, got {}",
                short(value)
            ));
        };
        Event::from_object(obj)
    }

    /// Parses one event object, given as a `serde_json` map or as a [`FlatObject`] read
    /// straight from text; the same rules and messages either way.
    pub fn from_object<O: EventObject>(obj: &O) -> Result<Option<Event>, EventError> {
        let Some(name) = obj.field("event") else {
            return err("'event' is a required property");
        };
        let Some(name) = name.as_str() else {
            return err(format!("'event' must be a string, got {}", short(name)));
        };
        let f = Fields { obj, event: name };
        let kind = match name {
            "user" => {
                let text = f.opt_str("text")?;
                let parse_data = match obj.field("parse_data") {
                    Some(Value::Object(m)) => m.clone(),
                    Some(Value::Null) | None => {
                        return err("event 'user' requires 'parse_data' to be an object")
                    }
                    Some(other) => {
                        return err(format!(
                            "'parse_data' must be an object, got {}",
                            short(other)
                        ))
                    }
                };
                check_parse_data(&parse_data)?;
                EventKind::User {
                    text,
                    parse_data,
                    input_channel: f.opt_str("input_channel")?,
                    message_id: f.opt_str("message_id")?,
                    intent_ranking: None,
                }
            }
            "bot" => EventKind::Bot {
                text: f.opt_str("text")?,
                data: BotData::from_map(f.map_or_empty("data")?),
            },
            "slot" => {
                let name = f.req_str("name")?;
                let Some(value) = obj.field("value") else {
                    return err("event 'slot' requires 'value'");
                };
                EventKind::Slot {
                    name,
                    value: value.clone(),
                }
            }
            "restart" => EventKind::Restart,
            "rewind" => EventKind::Rewind,
            "undo" => EventKind::Undo,
            "reset_slots" => EventKind::ResetSlots,
            "reminder" => {
                // 3.6 names the intent `intent`; 0.x named an action `action`.
                let intent = match (f.opt_str("intent")?, f.opt_str("action")?) {
                    (Some(i), _) => i,
                    (None, Some(a)) => a,
                    (None, None) => return err("event 'reminder' requires 'intent'"),
                };
                let entities = match obj.field("entities") {
                    None | Some(Value::Null) => Value::Null,
                    Some(v @ Value::Array(_)) => {
                        check_entities(v, "entities")?;
                        v.clone()
                    }
                    Some(other) => {
                        return err(format!(
                            "'entities' must be a list or null, got {}",
                            short(other)
                        ))
                    }
                };
                EventKind::Reminder {
                    intent,
                    entities,
                    date_time: f.req_str("date_time")?,
                    name: f
                        .opt_str("name")?
                        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
                    kill_on_user_msg: f.opt_bool("kill_on_user_msg")?.unwrap_or(true),
                }
            }
            "cancel_reminder" => EventKind::CancelReminder {
                name: f.opt_str("name")?,
                intent: f.opt_str("intent")?,
                entities: obj.field("entities").cloned().unwrap_or(Value::Null),
            },
            "export" => EventKind::Export {
                path: f.opt_str("path")?,
            },
            "followup" => EventKind::Followup {
                name: f.req_str("name")?,
            },
            "pause" => EventKind::Pause,
            "resume" => EventKind::Resume,
            "action" => {
                let name = f.opt_str("name")?;
                let action_text = f.opt_str("action_text")?;
                if name.is_none() && action_text.is_none() {
                    return err("event 'action' requires 'name' or 'action_text'");
                }
                // 0.11 called the confidence `policy_confidence`.
                let confidence = match f.opt_num("confidence")? {
                    Some(c) => Some(c),
                    None => f.opt_num("policy_confidence")?,
                };
                EventKind::Action {
                    name,
                    policy: f.opt_str("policy")?,
                    confidence,
                    action_text,
                    hide_rule_turn: f.opt_bool("hide_rule_turn")?.unwrap_or(false),
                }
            }
            "agent" => EventKind::Agent {
                text: f.opt_str("text")?,
                data: obj.field("data").cloned().unwrap_or(Value::Null),
            },
            "active_loop" | "form" => EventKind::ActiveLoop {
                name: f.opt_str("name")?,
            },
            "loop_interrupted" => EventKind::LoopInterrupted {
                is_interrupted: f.opt_bool("is_interrupted")?.unwrap_or(false),
            },
            "form_validation" => EventKind::LoopInterrupted {
                is_interrupted: !f.opt_bool("validate")?.unwrap_or(true),
            },
            "action_execution_rejected" => EventKind::ActionExecutionRejected {
                name: f.opt_str("name")?,
                policy: f.opt_str("policy")?,
                confidence: f.opt_num("confidence")?,
            },
            "session_started" => EventKind::SessionStarted,
            "entities" => {
                let Some(entities) = obj.field("entities") else {
                    return err("event 'entities' requires 'entities'");
                };
                check_entities(entities, "entities")?;
                EventKind::Entities {
                    entities: entities.as_array().cloned().unwrap_or_default(),
                }
            }
            "user_featurization" => EventKind::UserFeaturization {
                use_text_for_featurization: f
                    .opt_bool("use_text_for_featurization")?
                    .unwrap_or(false),
            },
            "topic" => return Ok(None),
            other => return err(format!("unknown event type '{other}'")),
        };
        let timestamp = match obj.field("timestamp") {
            None | Some(Value::Null) => now(),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(0.0) => now(),
                Some(t) if t.is_finite() => t,
                _ => return err("'timestamp' must be a finite number"),
            },
            Some(other) => {
                return err(format!(
                    "'timestamp' must be a number or null, got {}",
                    short(other)
                ))
            }
        };
        let metadata = match obj.field("metadata") {
            None | Some(Value::Null) => no_metadata(),
            Some(Value::Object(m)) if m.is_empty() => no_metadata(),
            Some(Value::Object(m)) => Arc::new(m.clone()),
            Some(other) => {
                return err(format!(
                    "'metadata' must be an object or null, got {}",
                    short(other)
                ))
            }
        };
        Ok(Some(Event {
            timestamp,
            metadata,
            kind,
        }))
    }

    /// Parses a list of events; one bad event fails the whole list (nothing is half-applied).
    pub fn list_from_json(values: &[Value]) -> Result<Vec<Event>, EventError> {
        Event::list_with(values, Event::from_json)
    }

    /// [`Event::list_from_json`] for objects read straight from text.
    pub fn list_from_objects(objects: &[FlatObject<'_>]) -> Result<Vec<Event>, EventError> {
        Event::list_with(objects, Event::from_object)
    }

    fn list_with<T>(
        items: &[T],
        parse: impl Fn(&T) -> Result<Option<Event>, EventError>,
    ) -> Result<Vec<Event>, EventError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match parse(item) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e) => return err(format!("event {i}: {}", e.0)),
            }
        }
        Ok(out)
    }

    /// The user event's parse data as 3.6 serialises it: `intent`, `entities`, `text`,
    /// `message_id`, `metadata` first, then every other key of the original.
    pub fn user_parse_data(&self) -> Option<Map<String, Value>> {
        match &self.kind {
            EventKind::User {
                text,
                parse_data,
                message_id,
                intent_ranking,
                ..
            } => {
                let mut m = Map::new();
                m.insert(
                    "intent".into(),
                    match intent_ranking {
                        Some(ranking) => ranking.intent_value(),
                        None => Value::Object(Map::new()),
                    },
                );
                m.insert("entities".into(), Value::Array(vec![]));
                m.insert(
                    "text".into(),
                    text.clone().map(Value::String).unwrap_or(Value::Null),
                );
                m.insert(
                    "message_id".into(),
                    message_id.clone().map(Value::String).unwrap_or(Value::Null),
                );
                m.insert("metadata".into(), Value::Object(Map::new()));
                for (k, v) in parse_data {
                    let v = match (k.as_str(), v) {
                        ("intent", Value::Null) => Value::Object(Map::new()),
                        ("entities", Value::Null) => Value::Array(vec![]),
                        _ => v.clone(),
                    };
                    m.insert(k.clone(), v);
                }
                if let Some(ranking) = intent_ranking {
                    m.insert("intent_ranking".into(), ranking.to_value());
                }
                Some(m)
            }
            _ => None,
        }
    }

    pub fn intent_name(&self) -> Option<&str> {
        match &self.kind {
            EventKind::User {
                intent_ranking: Some(ranking),
                ..
            } => ranking.top().map(|top| &*top.name),
            EventKind::User { parse_data, .. } => parse_data
                .get("intent")
                .and_then(|i| i.get("name"))
                .and_then(Value::as_str),
            _ => None,
        }
    }

    /// The event as 3.6 serialises it (see [`super::event_json`], the one definition).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The event's JSON text as 3.6 writes it.
    pub fn to_json_string(&self) -> String {
        // Room for the whole text at once: a user event with its parse data (an intent
        // ranking of ten) is ~900 bytes, a bot event ~300 besides its text, most others under
        // 300; growing the buffer cost more than the larger block.
        let text_len = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        let capacity = match &self.kind {
            EventKind::User { text, .. } => 1024 + 2 * text_len(text),
            EventKind::Bot { text, .. } => 384 + text_len(text),
            _ => 256,
        };
        let mut out = Vec::with_capacity(capacity);
        if let Err(e) = super::event_json::write_event(self, &mut out) {
            // Writing into memory fails only for a value JSON cannot hold, which no parsed or
            // built event has; reported rather than stored as half an event.
            tracing::error!("an event could not be written as JSON: {e}");
            return String::new();
        }
        debug_assert!(
            std::str::from_utf8(&out).is_ok(),
            "event_json wrote invalid UTF-8"
        );
        // SAFETY: `event_json` writes only ASCII of its own, `&str`s (escaped at ASCII bytes
        // or copied whole), serde_json's writing of strings and numbers, and text it wrote
        // before (the shared metadata): valid UTF-8, as serde_json's own `to_string` assumes
        // of its output. Checking it again cost ~1.3k instructions a REST turn (callgrind);
        // debug builds, which run the tests, still check it above.
        unsafe { String::from_utf8_unchecked(out) }
    }

    /// Adds `model_id` and `assistant_id` unless present (3.6 keeps an existing `model_id`).
    /// `stamp` is the model's ([`model_stamp`]); keys the event already has are kept.
    pub fn stamp(&mut self, stamp: &Metadata) {
        if self.metadata.is_empty() {
            self.metadata = stamp.clone();
            return;
        }
        let own = Arc::make_mut(&mut self.metadata);
        for (k, v) in stamp.iter() {
            own.entry(k.as_str()).or_insert_with(|| v.clone());
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// What a `user` event's `parse_data` must satisfy to be stored (and read back): its
/// `intent` and `entities`, when given, have the shapes trackers and policies rely on.
pub fn check_parse_data(parse_data: &Map<String, Value>) -> Result<(), EventError> {
    if let Some(intent) = parse_data.get("intent") {
        check_intent(intent)?;
    }
    if let Some(entities) = parse_data.get("entities") {
        check_entities(entities, "parse_data.entities")?;
    }
    Ok(())
}

fn check_intent(intent: &Value) -> Result<(), EventError> {
    match intent {
        Value::Null => Ok(()),
        Value::Object(m) => {
            if let Some(c) = m.get("confidence") {
                if !c.is_number() && !c.is_null() {
                    return err("'parse_data.intent.confidence' must be a number");
                }
            }
            if let Some(n) = m.get("name") {
                if !n.is_string() && !n.is_null() {
                    return err("'parse_data.intent.name' must be a string or null");
                }
            }
            Ok(())
        }
        other => err(format!(
            "'parse_data.intent' must be an object, got {}",
            short(other)
        )),
    }
}

fn check_entities(entities: &Value, path: &str) -> Result<(), EventError> {
    let Some(list) = entities.as_array() else {
        return err(format!("'{path}' must be a list, got {}", short(entities)));
    };
    for (i, e) in list.iter().enumerate() {
        let Some(o) = e.as_object() else {
            return err(format!("'{path}[{i}]' must be an object"));
        };
        if !o.get("entity").is_some_and(Value::is_string) {
            return err(format!(
                "'{path}[{i}].entity' is required and must be a string"
            ));
        }
        if !o.contains_key("value") {
            return err(format!("'{path}[{i}].value' is required"));
        }
        for k in ["start", "end"] {
            if let Some(v) = o.get(k) {
                if !(v.is_i64() || v.is_u64()) {
                    return err(format!("'{path}[{i}].{k}' must be an integer"));
                }
            }
        }
        if let Some(c) = o.get("confidence") {
            if !c.is_number() {
                return err(format!("'{path}[{i}].confidence' must be a number"));
            }
        }
    }
    Ok(())
}

/// The top-level keys of an event object, however it was read.
pub trait EventObject {
    fn field(&self, key: &str) -> Option<&Value>;
}

impl EventObject for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

/// An event object read straight from JSON text: its top-level keys in order, each with its
/// value as a `serde_json::Value`, but no map around them. A `Value` object hashes every key
/// (SipHash, `serde_json`'s `preserve_order` map) and allocates it; here a key without escapes
/// is borrowed from the text and a lookup is a scan of a dozen entries at most. That was ~10 %
/// of the instructions of appending one event (bench/instructions.sh p1).
/// Only objects read this way: anything else fails to deserialise, and the caller then takes
/// the general way through `Value`, whose errors name what is wrong.
#[derive(Debug)]
pub struct FlatObject<'a>(Vec<(std::borrow::Cow<'a, str>, Value)>);

impl EventObject for FlatObject<'_> {
    /// A key given twice counts with its last value, as in `serde_json`'s map.
    fn field(&self, key: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> serde::Deserialize<'de> for FlatObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = FlatObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FlatObject<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).max(4));
                while let Some(Key(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(FlatObject(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

struct Fields<'a, O> {
    obj: &'a O,
    event: &'a str,
}

impl<O: EventObject> Fields<'_, O> {
    fn opt_str(&self, key: &str) -> Result<Option<String>, EventError> {
        match self.obj.field(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => err(format!(
                "'{key}' of event '{}' must be a string or null, got {}",
                self.event,
                short(other)
            )),
        }
    }
    fn req_str(&self, key: &str) -> Result<String, EventError> {
        match self.opt_str(key)? {
            Some(s) => Ok(s),
            None => err(format!(
                "event '{}' requires '{key}' (a string)",
                self.event
            )),
        }
    }
    fn opt_bool(&self, key: &str) -> Result<Option<bool>, EventError> {
        match self.obj.field(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => err(format!(
                "'{key}' of event '{}' must be a boolean, got {}",
                self.event,
                short(other)
            )),
        }
    }
    fn opt_num(&self, key: &str) -> Result<Option<f64>, EventError> {
        match self.obj.field(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => err(format!(
                "'{key}' of event '{}' must be a number or null, got {}",
                self.event,
                short(other)
            )),
        }
    }

    fn map_or_empty(&self, key: &str) -> Result<Map<String, Value>, EventError> {
        match self.obj.field(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => err(format!(
                "'{key}' of event '{}' must be an object, got {}",
                self.event,
                short(other)
            )),
        }
    }
}

/// The event's JSON text ([`super::event_json`], the one definition) as a raw value: written
/// as it is by `serde_json`'s writers, parsed by its `Value` serialiser.
impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let raw = serde_json::value::RawValue::from_string(self.to_json_string())
            .map_err(S::Error::custom)?;
        raw.serialize(ser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round(v: Value) -> Value {
        Event::from_json(&v).unwrap().unwrap().to_json()
    }

    #[test]
    fn captured_events_round_trip_exactly() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/captured-3.6.21/"
        );
        for file in [
            "conv1-tracker-ALL.json",
            "tracker-ALL.json",
            "events-append-list-new-conv.json",
        ] {
            let text = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
            let tracker: Value = serde_json::from_str(&text).unwrap();
            for e in tracker["events"].as_array().unwrap() {
                assert_eq!(&round(e.clone()), e, "in {file}");
                assert_eq!(
                    round(e.clone()).to_string(),
                    e.to_string(),
                    "key order in {file}"
                );
            }
        }
    }

    /// An event read straight from text ([`FlatObject`]) is the event, or the error, read
    /// through a `Value`: for every captured event, every refused one, escaped and repeated
    /// keys, and nested objects.
    #[test]
    fn objects_read_from_text_parse_as_values_do() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/captured-3.6.21/"
        );
        let mut texts: Vec<String> = Vec::new();
        for file in ["conv1-tracker-ALL.json", "tracker-ALL.json"] {
            let text = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
            let tracker: Value = serde_json::from_str(&text).unwrap();
            texts.extend(
                tracker["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Value::to_string),
            );
        }
        texts.extend(
            [
                r#"{}"#,
                r#"{"event": "nope"}"#,
                r#"{"event": 3}"#,
                r#"{"event": "user", "parse_data": null, "timestamp": 1}"#,
                r#"{"event": "slot", "name": "x", "timestamp": 1}"#,
                r#"{"event": "slot", "name": "x", "value": {"a": [1, {"b": null}]}, "timestamp": 1}"#,
                r#"{"event": "slot", "name": "x", "value": 1, "value": 2, "timestamp": 1}"#,
                r#"{"event": "slot", "name": "x", "value": 1, "timestamp": "soon"}"#,
                r#"{"event": "slot", "name": "x", "value": 1, "metadata": [], "timestamp": 1}"#,
                r#"{"\u0065vent": "slot", "na\u006de": "x\"y", "value": "\u00e9", "timestamp": 1}"#,
                r#"{"event": "action", "name": 3, "timestamp": 1}"#,
                r#"{"event": "topic"}"#,
                r#"{"event": "bot", "text": "hi", "data": {"buttons": []}, "metadata": {"m": 1}, "timestamp": 2.5}"#,
            ]
            .map(String::from),
        );
        for text in &texts {
            let object: FlatObject = serde_json::from_str(text).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                Event::from_object(&object),
                Event::from_json(&value),
                "{text}"
            );
            assert_eq!(
                Event::from_json_text(text),
                Event::from_json(&value),
                "{text}"
            );
        }
        // Not objects: not read this way (the caller then goes through `Value`).
        for text in [
            "[]",
            "3",
            "null",
            "\"event\"",
            "{\"event\": \"pause\"",
            "{1: 2}",
        ] {
            assert!(serde_json::from_str::<FlatObject>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn slot_values_keep_their_types() {
        for v in [
            json!(34),
            json!("34"),
            json!(null),
            json!([34, "34", null]),
            json!(1.5),
            json!({"a": [1]}),
        ] {
            let e = json!({"event": "slot", "timestamp": 1.0, "name": "cuisine", "value": v});
            assert_eq!(round(e.clone())["value"], v);
        }
    }

    #[test]
    fn legacy_forms_are_reemitted_as_loops() {
        let e = round(json!({"event": "form", "timestamp": 2.0, "name": "f"}));
        assert_eq!(
            e,
            json!({"event": "active_loop", "timestamp": 2.0, "name": "f"})
        );
        let e = round(json!({"event": "form_validation", "timestamp": 2.0, "validate": false}));
        assert_eq!(
            e,
            json!({"event": "loop_interrupted", "timestamp": 2.0, "is_interrupted": true})
        );
    }

    #[test]
    fn bad_events_are_refused_with_a_reason() {
        for bad in [
            json!(null),
            json!(0),
            json!("AAA"),
            json!({}),
            json!({"event": "nope"}),
            json!({"event": "user"}),
            json!({"event": "user", "parse_data": null}),
            json!({"event": "slot"}),
            json!({"event": "slot", "name": "x"}),
            json!({"event": "action"}),
            json!({"event": "reminder"}),
            json!({"event": "action", "name": 3}),
            json!({"event": "user", "parse_data": {"entities": {"a": 1}}}),
            json!({"event": "slot", "name": "x", "value": 1, "timestamp": "soon"}),
            json!({"event": "slot", "name": "x", "value": 1, "metadata": []}),
        ] {
            assert!(Event::from_json(&bad).is_err(), "accepted {bad}");
        }
        assert_eq!(Event::from_json(&json!({"event": "topic"})).unwrap(), None);
    }

    #[test]
    fn timestamp_zero_or_missing_means_now() {
        let before = now();
        let e = Event::from_json(&json!({"event": "pause", "timestamp": 0}))
            .unwrap()
            .unwrap();
        assert!(e.timestamp >= before);
    }

    #[test]
    fn user_parse_data_is_completed() {
        let e = round(
            json!({"event": "user", "timestamp": 1.0, "text": "hi", "parse_data": {"intent": {"name": "greet", "confidence": 1.0}, "entities": []}}),
        );
        assert_eq!(
            e.to_string(),
            r#"{"event":"user","timestamp":1.0,"metadata":{},"text":"hi","parse_data":{"intent":{"name":"greet","confidence":1.0},"entities":[],"text":"hi","message_id":null,"metadata":{}},"input_channel":null,"message_id":null}"#
        );
    }
}
