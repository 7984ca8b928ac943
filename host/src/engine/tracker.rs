//! The tracker: a conversation's state as a pure function of its events (rasa-http-api §4c–5c).

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::event::{Event, EventKind};
use super::texts::EventTexts;
use crate::domain::Domain;

pub const ACTION_LISTEN: &str = "action_listen";
pub const ACTION_SESSION_START: &str = "action_session_start";
pub const ACTION_RESTART: &str = "action_restart";

/// Which events the tracker JSON lists (`include_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventVerbosity {
    None,
    Applied,
    AfterRestart,
    All,
}

impl EventVerbosity {
    /// Parses the query parameter, case-insensitively, as 3.6 does.
    pub fn parse(text: &str) -> Option<EventVerbosity> {
        [
            ("NONE", Self::None),
            ("APPLIED", Self::Applied),
            ("AFTER_RESTART", Self::AfterRestart),
            ("ALL", Self::All),
        ]
        .into_iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveLoop {
    pub name: String,
    pub is_interrupted: bool,
    pub rejected: bool,
    pub trigger_message: Value,
}

/// A value no `applied_generation` had before (in this process).
fn new_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The state derived from events.
#[derive(Debug, Clone)]
pub struct TrackerState {
    pub slots: Vec<(String, Value)>,
    /// Index of the latest applied user event, and its live entity list.
    pub latest_message: Option<(usize, Vec<Value>)>,
    pub latest_action: Option<LatestAction>,
    pub followup_action: Option<String>,
    pub paused: bool,
    pub active_loop: Option<ActiveLoop>,
    pub latest_bot_utterance: Option<usize>,
    /// Indices (into the event list) of the applied events.
    pub applied: Vec<usize>,
    /// Changes whenever `applied` is not just appended to (a new state, a restart, a session
    /// start, an undo or a rewind): while it is unchanged, an earlier reading of `applied` is a
    /// prefix of it (what the turn's featurisation relies on, without comparing the lists).
    pub applied_generation: u64,
    /// How many events this state has seen (for `extend`).
    pub seen: usize,
    /// The last user event's `input_channel` over all events (reverted ones included).
    pub latest_input_channel: Option<String>,
    /// The timestamp of the last user event over all events (reverted ones included): when
    /// the session expires. Kept here so that a turn need not look back through the events.
    pub latest_user_time: Option<f64>,
    /// `latest_message` as the tracker JSON writes it (parse data and live entities): written
    /// by the first tracker answered after it changed (from the event's text or parsed form),
    /// then copied by every other. As text, a fifth of the parsed map's size (P6 in
    /// docs/benchmarks.md). A turn, which answers no tracker, never writes it.
    latest_message_text: OnceLock<Box<RawValue>>,
    /// Index of the last `restart` event (`AFTER_RESTART` lists the events after it).
    pub last_restart: Option<usize>,
    /// The timestamp of the last event (`latest_event_time`).
    pub latest_event_time: Option<f64>,
}

/// [`TrackerState::extend_by`] was given a `rewind` or `undo`, which replays earlier events:
/// extend with the whole list instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsAllEvents;

/// Events a state is extended with: `events[k]` is event `offset + k` of the conversation.
#[derive(Clone, Copy)]
struct Window<'e> {
    events: &'e [Event],
    offset: usize,
}

impl<'e> Window<'e> {
    fn get(&self, i: usize) -> &'e Event {
        &self.events[i - self.offset]
    }

    fn end(&self) -> usize {
        self.offset + self.events.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LatestAction {
    Name(String),
    Text(String),
}

impl TrackerState {
    fn reset(&mut self, domain: &Domain) {
        self.slots = domain
            .slots()
            .iter()
            .map(|s| (s.name.clone(), s.initial_value.clone()))
            .collect();
        self.latest_message = None;
        self.latest_message_text.take();
        self.latest_action = None;
        self.followup_action = Some(ACTION_LISTEN.into());
        self.paused = false;
        self.active_loop = None;
        self.latest_bot_utterance = None;
    }

    fn new(domain: &Domain) -> TrackerState {
        let mut s = TrackerState {
            slots: Vec::new(),
            latest_message: None,
            latest_action: None,
            followup_action: None,
            paused: false,
            active_loop: None,
            latest_bot_utterance: None,
            applied: Vec::new(),
            applied_generation: new_generation(),
            seen: 0,
            latest_input_channel: None,
            latest_user_time: None,
            latest_message_text: OnceLock::new(),
            last_restart: None,
            latest_event_time: None,
        };
        s.reset(domain);
        // A fresh tracker has no pending follow-up until something asks for one.
        s.followup_action = None;
        s
    }

    /// Replays `events` with Rasa's semantics: restart and session_started reset; rewind and
    /// undo reset, then replay the applied events without the reverted ones.
    pub fn compute(domain: &Domain, events: &[Event]) -> TrackerState {
        let mut st = TrackerState::new(domain);
        st.extend(domain, events, 0);
        st
    }

    /// Applies `events[from..]` to a state computed from `events[..from]`: the same result as
    /// `compute(domain, events)`, in time proportional to the new events (a rewind or undo
    /// among them replays the applied events).
    pub fn extend(&mut self, domain: &Domain, events: &[Event], from: usize) {
        self.extend_window(domain, Window { events, offset: 0 }, from);
    }

    /// Applies `new`, the events that follow the `seen` ones this state was computed from:
    /// the same result as [`Self::extend`] with the whole list, without the earlier events.
    /// A `rewind` or `undo` (which replays earlier events) or a loop's activation (whose
    /// trigger message is the latest user message, maybe an earlier event) among them needs
    /// the earlier events; then nothing is changed.
    pub fn extend_by(&mut self, domain: &Domain, new: &[Event]) -> Result<(), NeedsAllEvents> {
        if new.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::Rewind | EventKind::Undo | EventKind::ActiveLoop { name: Some(_) }
            )
        }) {
            return Err(NeedsAllEvents);
        }
        let seen = self.seen;
        self.extend_window(
            domain,
            Window {
                events: new,
                offset: seen,
            },
            seen,
        );
        Ok(())
    }

    fn extend_window(&mut self, domain: &Domain, events: Window<'_>, from: usize) {
        let mut applied = std::mem::take(&mut self.applied);
        for i in from..events.end() {
            let e = events.get(i);
            if let EventKind::User { input_channel, .. } = &e.kind {
                self.latest_input_channel = input_channel.clone();
                self.latest_user_time = Some(e.timestamp);
            }
            match &e.kind {
                EventKind::Restart => {
                    self.last_restart = Some(i);
                    applied.clear();
                    self.applied_generation = new_generation();
                    self.reset(domain);
                    self.followup_action = Some(ACTION_SESSION_START.into());
                }
                EventKind::SessionStarted => {
                    applied.clear();
                    self.applied_generation = new_generation();
                    self.reset(domain);
                }
                EventKind::Rewind => {
                    // Back to and including the last user event, then the action before it.
                    if let Some(pos) = applied
                        .iter()
                        .rposition(|&j| matches!(events.get(j).kind, EventKind::User { .. }))
                    {
                        applied.truncate(pos);
                        self.applied_generation = new_generation();
                        if let Some(pos) = applied
                            .iter()
                            .rposition(|&j| matches!(events.get(j).kind, EventKind::Action { .. }))
                        {
                            applied.truncate(pos);
                        }
                    }
                    self.replay(domain, events, &applied);
                }
                EventKind::Undo => {
                    if let Some(pos) = applied
                        .iter()
                        .rposition(|&j| matches!(events.get(j).kind, EventKind::Action { .. }))
                    {
                        applied.truncate(pos);
                        self.applied_generation = new_generation();
                    }
                    self.replay(domain, events, &applied);
                }
                _ => {
                    applied.push(i);
                    self.apply(domain, events, i);
                }
            }
        }
        self.applied = applied;
        if events.end() > from {
            self.latest_event_time = Some(events.get(events.end() - 1).timestamp);
        }
        self.seen = events.end();
    }

    fn replay(&mut self, domain: &Domain, events: Window<'_>, applied: &[usize]) {
        self.reset(domain);
        for &j in applied {
            self.apply(domain, events, j);
        }
    }

    fn apply(&mut self, domain: &Domain, events: Window<'_>, i: usize) {
        let e = events.get(i);
        match &e.kind {
            EventKind::User { parse_data, .. } => {
                let entities = parse_data
                    .get("entities")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                self.latest_message = Some((i, entities));
                self.latest_message_text.take();
                self.followup_action = None;
            }
            EventKind::Bot { .. } => self.latest_bot_utterance = Some(i),
            EventKind::Slot { name, value } => {
                // A slot the domain does not know is stored but changes nothing (as in Rasa).
                if let Some(slot) = self.slots.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = value.clone();
                }
            }
            EventKind::ResetSlots => {
                self.slots = domain
                    .slots()
                    .iter()
                    .map(|s| (s.name.clone(), s.initial_value.clone()))
                    .collect();
            }
            EventKind::Followup { name } => self.followup_action = Some(name.clone()),
            EventKind::Pause => self.paused = true,
            EventKind::Resume => self.paused = false,
            EventKind::Action {
                name, action_text, ..
            } => {
                self.latest_action = match (name, action_text) {
                    (Some(n), _) => Some(LatestAction::Name(n.clone())),
                    (None, Some(t)) => Some(LatestAction::Text(t.clone())),
                    (None, None) => None,
                };
                self.followup_action = None;
                if let Some(l) = self.active_loop.as_mut() {
                    l.is_interrupted = false;
                    if name.as_deref() == Some(l.name.as_str()) {
                        l.rejected = false;
                    }
                }
            }
            EventKind::ActiveLoop { name } => {
                // Not in `extend_by`'s windows, so the latest user event is in `events`.
                self.active_loop = name.as_ref().map(|n| ActiveLoop {
                    name: n.clone(),
                    is_interrupted: false,
                    rejected: false,
                    trigger_message: self.latest_message_with(|i| Some(events.get(i))),
                });
            }
            EventKind::LoopInterrupted { is_interrupted } => {
                if let Some(l) = self.active_loop.as_mut() {
                    l.is_interrupted = *is_interrupted;
                }
            }
            EventKind::ActionExecutionRejected { name, .. } => {
                if let Some(l) = self.active_loop.as_mut() {
                    if name.as_deref() == Some(l.name.as_str()) {
                        l.rejected = true;
                    }
                }
            }
            EventKind::Entities { entities }
                if self.latest_action_name() == Some(ACTION_LISTEN) =>
            {
                if let Some((_, list)) = self.latest_message.as_mut() {
                    for ent in entities {
                        if !list.contains(ent) {
                            list.push(ent.clone());
                            self.latest_message_text.take();
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// `latest_message` as JSON text, written from `events` (or their texts) unless already
    /// written; `None` before any user message.
    fn latest_message_raw(&self, events: Source<'_>) -> Result<Option<&RawValue>, String> {
        let Some((i, _)) = &self.latest_message else {
            return Ok(None);
        };
        if let Some(text) = self.latest_message_text.get() {
            return Ok(Some(text));
        }
        let event: Cow<'_, Event> = match events {
            Source::Parsed(events) => Cow::Borrowed(&events[*i]),
            Source::Texts(texts) => Cow::Owned(texts.event(*i)?),
        };
        let value = self.latest_message_with(|_| Some(event.as_ref()));
        let text = serde_json::value::to_raw_value(&value).map_err(|e| e.to_string())?;
        Ok(Some(self.latest_message_text.get_or_init(|| text)))
    }

    /// `latest_message` as 3.6 prints it, its event given by `event`.
    fn latest_message_with<'e>(&self, event: impl FnOnce(usize) -> Option<&'e Event>) -> Value {
        match &self.latest_message {
            Some((i, entities)) => {
                let mut pd = event(*i)
                    .and_then(Event::user_parse_data)
                    .unwrap_or_default();
                pd.insert("entities".into(), Value::Array(entities.clone()));
                Value::Object(pd)
            }
            None => {
                json!({"intent": {}, "entities": [], "text": null, "message_id": null, "metadata": {}})
            }
        }
    }

    pub fn latest_action_name(&self) -> Option<&str> {
        match &self.latest_action {
            Some(LatestAction::Name(n)) => Some(n),
            Some(LatestAction::Text(t)) => Some(t),
            None => None,
        }
    }

    pub fn slot(&self, name: &str) -> Option<&Value> {
        self.slots.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `latest_message` as 3.6 prints it: the parse data with the live entity list.
    pub fn latest_message_json(&self, events: &[Event]) -> Value {
        self.latest_message_with(|i| events.get(i))
    }
}

/// The tracker JSON of 3.6 (`GET …/tracker`), key order included.
pub fn tracker_json(
    sender_id: &str,
    domain: &Domain,
    events: &[Event],
    verbosity: EventVerbosity,
) -> Value {
    let state = TrackerState::compute(domain, events);
    serde_json::to_value(TrackerView {
        sender_id,
        events,
        state: &state,
        verbosity,
    })
    .unwrap_or(Value::Null)
}

/// A tracker ready to serialise: its events, their state, and which events to list. Written
/// straight to the response, without an intermediate `Value` per event.
pub struct TrackerView<'a> {
    pub sender_id: &'a str,
    pub events: &'a [Event],
    pub state: &'a TrackerState,
    pub verbosity: EventVerbosity,
}

impl TrackerView<'_> {
    /// The events listed at this verbosity (`None`: `"events": null`).
    fn listed(&self) -> Option<Listing<'_>> {
        listing(self.verbosity, self.events.len(), self.state)
    }

    /// The tracker as JSON bytes, as the `Serialize` impl writes it. With `texts` (the stored
    /// JSON of each of `events`), the listed events are copied from it instead of serialised.
    pub fn to_json_bytes(&self, texts: Option<&EventTexts>) -> serde_json::Result<Vec<u8>> {
        match texts.filter(|t| t.len() == self.events.len() && self.state.seen == t.len()) {
            Some(texts) => TextTrackerView {
                sender_id: self.sender_id,
                texts,
                state: self.state,
                verbosity: self.verbosity,
            }
            .to_json_bytes(),
            None => self.write(),
        }
    }

    /// The tracker as JSON bytes, its listed events written from the parsed events.
    fn write(&self) -> serde_json::Result<Vec<u8>> {
        let summary = Summary {
            sender_id: self.sender_id,
            state: self.state,
            events: Source::Parsed(self.events),
        };
        let mut out = Vec::with_capacity(512);
        summary.write_head(&mut out)?;
        out.extend_from_slice(b",\"events\":");
        let mut write_list = |events: &mut dyn Iterator<Item = &Event>| {
            out.push(b'[');
            for (n, e) in events.enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                super::event_json::write_event(e, &mut out)?;
            }
            out.push(b']');
            Ok::<(), serde_json::Error>(())
        };
        match self.listed() {
            None => out.extend_from_slice(b"null"),
            Some(Listing::Run(run)) => write_list(&mut self.events[run].iter())?,
            Some(Listing::Picked(indices)) => {
                write_list(&mut indices.iter().map(|&i| &self.events[i]))?
            }
        }
        summary.write_tail(&mut out)?;
        Ok(out)
    }
}

/// Where a tracker's event texts come from: held, or fetched when first needed (a log whose
/// texts the tracker store keeps, `conversations::LogTexts`). A tracker that lists no event
/// and whose state has its latest message written needs only their count.
pub trait TextSource {
    fn count(&self) -> usize;
    fn texts(&self) -> Result<&EventTexts, String>;
    /// Event `i`, parsed (a source may have it at hand without its text).
    fn event(&self, i: usize) -> Result<Event, String> {
        super::texts::parse_text(i, self.texts()?.get(i)).map_err(|e| e.0)
    }
}

impl TextSource for EventTexts {
    fn count(&self) -> usize {
        self.len()
    }
    fn texts(&self) -> Result<&EventTexts, String> {
        Ok(self)
    }
}

/// A tracker answered from its events' texts and their state alone: the listed events are
/// copied from the texts, everything else comes from the state, so no event needs to be
/// parsed. The same bytes as [`TrackerView`]'s `Serialize` of the parsed events.
pub struct TextTrackerView<'a> {
    pub sender_id: &'a str,
    /// The JSON text of every event the state has seen.
    pub texts: &'a dyn TextSource,
    pub state: &'a TrackerState,
    pub verbosity: EventVerbosity,
}

impl TextTrackerView<'_> {
    /// The events listed at this verbosity, found from the state.
    fn listed(&self) -> Option<Listing<'_>> {
        listing(self.verbosity, self.texts.count(), self.state)
    }

    /// The tracker as JSON bytes. Fails when the state was not computed from these texts'
    /// events, or when the texts cannot be had.
    pub fn to_json_bytes(&self) -> serde_json::Result<Vec<u8>> {
        if self.state.seen != self.texts.count() {
            return Err(serde::ser::Error::custom(format!(
                "a tracker state of {} events with the texts of {}",
                self.state.seen,
                self.texts.count()
            )));
        }
        let summary = Summary {
            sender_id: self.sender_id,
            state: self.state,
            events: Source::Texts(self.texts),
        };
        // `{<head>,"events":[…],<tail>}`: head and tail are maps of at least one entry.
        // The texts are needed (fetched, if the store keeps them) only for listed events.
        let listing = match self.listed() {
            None => None,
            Some(l) => Some((l, self.texts.texts().map_err(serde::ser::Error::custom)?)),
        };
        // One allocation: the head and tail are a few hundred bytes, the events are copied.
        let listed_bytes = match &listing {
            None => 0,
            Some((Listing::Run(run), texts)) => {
                texts.slices(run.clone()).map(|s| s.len() + 1).sum()
            }
            Some((Listing::Picked(indices), texts)) => {
                indices.iter().map(|&i| texts.get(i).len() + 1).sum()
            }
        };
        let mut out = Vec::with_capacity(512 + listed_bytes);
        summary.write_head(&mut out)?;
        out.extend_from_slice(b",\"events\":");
        match listing {
            None => out.extend_from_slice(b"null"),
            Some((Listing::Run(run), texts)) => {
                out.push(b'[');
                for (n, slice) in texts.slices(run).enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(slice.as_bytes());
                }
                out.push(b']');
            }
            Some((Listing::Picked(indices), texts)) => {
                out.push(b'[');
                for (n, &i) in indices.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(texts.get(i).as_bytes());
                }
                out.push(b']');
            }
        }
        summary.write_tail(&mut out)?;
        Ok(out)
    }
}

/// Which of a conversation's `len` events a tracker lists at `verbosity`, `state` being the
/// state of those events (`None`: `"events": null`).
fn listing(verbosity: EventVerbosity, len: usize, state: &TrackerState) -> Option<Listing<'_>> {
    match verbosity {
        EventVerbosity::None => None,
        EventVerbosity::All => Some(Listing::Run(0..len)),
        EventVerbosity::AfterRestart => {
            let start = state.last_restart.map(|i| i + 1).unwrap_or(0);
            Some(Listing::Run(start..len))
        }
        EventVerbosity::Applied => Some(Listing::Picked(&state.applied)),
    }
}

/// Which events a tracker lists.
enum Listing<'a> {
    /// A run of consecutive events.
    Run(std::ops::Range<usize>),
    /// The applied events.
    Picked(&'a [usize]),
}

/// What the entries around `events` are made of: they depend on the state alone.
#[derive(Clone, Copy)]
struct Summary<'a> {
    sender_id: &'a str,
    state: &'a TrackerState,
    /// Where the latest message's event is, should the state not have written it yet.
    events: Source<'a>,
}

/// The events of a tracker, parsed or as their texts.
#[derive(Clone, Copy)]
enum Source<'a> {
    Parsed(&'a [Event]),
    Texts(&'a dyn TextSource),
}

/// `latest_message` before any user message, as `latest_message_json` gives it.
const NO_LATEST_MESSAGE: &[u8] =
    br#"{"intent":{},"entities":[],"text":null,"message_id":null,"metadata":{}}"#;

/// A tracker's entries other than `events` are written by hand, like events
/// ([`super::event_json`]): keys are constant bytes, and nothing is built per request.
impl Summary<'_> {
    /// `{` and the entries before `events`, in 3.6's order.
    fn write_head(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use super::event_json::{bool, object, opt_float, opt_string, string};
        let st = self.state;
        out.extend_from_slice(b"{\"sender_id\":");
        string(out, self.sender_id)?;
        // The names are unique: the domain's `slots` is one YAML mapping, and the implicit
        // slots are added only when absent (`domain/parse.rs`).
        out.extend_from_slice(b",\"slots\":");
        object(out, st.slots.iter().map(|(name, v)| (name, v)))?;
        out.extend_from_slice(b",\"latest_message\":");
        match st
            .latest_message_raw(self.events)
            .map_err(serde::ser::Error::custom)?
        {
            Some(text) => out.extend_from_slice(text.get().as_bytes()),
            None => out.extend_from_slice(NO_LATEST_MESSAGE),
        }
        out.extend_from_slice(b",\"latest_event_time\":");
        opt_float(out, st.latest_event_time)?;
        out.extend_from_slice(b",\"followup_action\":");
        opt_string(out, &st.followup_action)?;
        out.extend_from_slice(b",\"paused\":");
        bool(out, st.paused);
        Ok(())
    }

    /// The entries after `events`, and the closing `}`.
    fn write_tail(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use super::event_json::{bool, opt_string, string, value};
        let st = self.state;
        out.extend_from_slice(b",\"latest_input_channel\":");
        opt_string(out, &st.latest_input_channel)?;
        out.extend_from_slice(b",\"active_loop\":");
        match &st.active_loop {
            None => out.extend_from_slice(b"{}"),
            Some(l) => {
                out.extend_from_slice(b"{\"name\":");
                string(out, &l.name)?;
                out.extend_from_slice(b",\"is_interrupted\":");
                bool(out, l.is_interrupted);
                out.extend_from_slice(b",\"rejected\":");
                bool(out, l.rejected);
                out.extend_from_slice(b",\"trigger_message\":");
                value(out, &l.trigger_message)?;
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"latest_action\":");
        match &st.latest_action {
            Some(LatestAction::Name(n)) => {
                out.extend_from_slice(b"{\"action_name\":");
                string(out, n)?;
                out.push(b'}');
            }
            Some(LatestAction::Text(t)) => {
                out.extend_from_slice(b"{\"action_text\":");
                string(out, t)?;
                out.push(b'}');
            }
            None => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b",\"latest_action_name\":");
        match st.latest_action_name() {
            Some(n) => string(out, n)?,
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Ok(())
    }
}

/// The tracker's JSON text as a raw value, like an event's: written as it is by
/// `serde_json`'s writers, parsed by its `Value` serialiser.
impl serde::Serialize for TrackerView<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let bytes = self.write().map_err(S::Error::custom)?;
        let text = String::from_utf8(bytes).map_err(S::Error::custom)?;
        RawValue::from_string(text)
            .map_err(S::Error::custom)?
            .serialize(ser)
    }
}

/// Events up to `until`: a truncation at the first later timestamp, not a filter (§5c).
pub fn truncate_until(events: &[Event], until: Option<f64>) -> &[Event] {
    match until {
        Some(t) => {
            let end = events
                .iter()
                .position(|e| e.timestamp > t)
                .unwrap_or(events.len());
            &events[..end]
        }
        None => events,
    }
}

/// The session-start sequence 3.6 runs for a new conversation: `action_session_start`,
/// `session_started`, the carried-over slots, `action_listen`.
pub fn session_start_events(carried_slots: Vec<Event>, policy: Option<&str>) -> Vec<Event> {
    let mut out = vec![
        Event::action_with(ACTION_SESSION_START, policy, Some(1.0)),
        Event::new(EventKind::SessionStarted),
    ];
    out.extend(carried_slots);
    out.push(Event::action(ACTION_LISTEN));
    out
}

/// True when the events start with a session start (`action_session_start` + `session_started`).
pub fn starts_with_session_start(events: &[Event]) -> bool {
    events.len() >= 2
        && events[0].is_action(ACTION_SESSION_START)
        && matches!(events[1].kind, EventKind::SessionStarted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(list: Value) -> Vec<Event> {
        Event::list_from_json(list.as_array().unwrap()).unwrap()
    }

    fn domain_with(slot: &str) -> Domain {
        let mut d = Domain::empty();
        d.slots.insert(
            0,
            crate::domain::Slot::implicit(slot, crate::domain::SlotKind::Any),
        );
        d
    }

    #[test]
    fn captured_trackers_are_reproduced() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/captured-3.6.21/"
        );
        let domain = domain_with("bench_slot");
        for (file, verbosity) in [
            ("tracker-ALL.json", EventVerbosity::All),
            ("conv1-tracker-ALL.json", EventVerbosity::All),
            (
                "events-append-list-new-conv.json",
                EventVerbosity::AfterRestart,
            ),
            (
                "tracker-new-conversation.json",
                EventVerbosity::AfterRestart,
            ),
        ] {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(format!("{dir}{file}")).unwrap())
                    .unwrap();
            let events = parse(expected["events"].clone());
            let got = tracker_json(
                expected["sender_id"].as_str().unwrap(),
                &domain,
                &events,
                verbosity,
            );
            assert_eq!(got.to_string(), expected.to_string(), "{file}");
        }
        // The other verbosities of the same conversations.
        let all: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}tracker-ALL.json")).unwrap(),
        )
        .unwrap();
        let events = parse(all["events"].clone());
        for (file, verbosity) in [
            ("tracker-AFTER_RESTART.json", EventVerbosity::AfterRestart),
            ("tracker-APPLIED.json", EventVerbosity::Applied),
            ("tracker-NONE.json", EventVerbosity::None),
            ("tracker-default.json", EventVerbosity::AfterRestart),
        ] {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(format!("{dir}{file}")).unwrap())
                    .unwrap();
            let got = tracker_json("sample-conv2", &domain, &events, verbosity);
            assert_eq!(got, expected, "{file}");
        }
        let all: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}conv1-tracker-ALL.json")).unwrap(),
        )
        .unwrap();
        let events = parse(all["events"].clone());
        for (file, verbosity) in [
            (
                "conv1-tracker-AFTER_RESTART.json",
                EventVerbosity::AfterRestart,
            ),
            ("conv1-tracker-APPLIED.json", EventVerbosity::Applied),
        ] {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(format!("{dir}{file}")).unwrap())
                    .unwrap();
            assert_eq!(
                tracker_json("sample-conv", &domain, &events, verbosity),
                expected,
                "{file}"
            );
        }
    }

    #[test]
    fn rewind_and_undo() {
        let d = Domain::empty();
        let user = |t: &str| json!({"event": "user", "text": t, "parse_data": {"intent": {"name": t}, "entities": []}});
        let act = |n: &str| json!({"event": "action", "name": n});
        let ev = parse(
            json!([act("action_listen"), user("hi"), act("utter_hi"), act("action_listen"), user("bye"), act("utter_bye"), act("action_listen"), {"event": "rewind"}]),
        );
        let st = TrackerState::compute(&d, &ev);
        assert_eq!(st.latest_action_name(), Some("utter_hi"));
        assert_eq!(st.applied, vec![0, 1, 2]);
        let ev = parse(
            json!([act("action_listen"), user("hi"), act("my_action"), act("action_listen"), {"event": "undo"}]),
        );
        assert_eq!(
            TrackerState::compute(&d, &ev).latest_action_name(),
            Some("my_action")
        );
    }

    #[test]
    fn restart_sets_session_start_as_followup() {
        let d = Domain::empty();
        let ev = parse(json!([{"event": "action", "name": "action_listen"}, {"event": "restart"}]));
        let j = tracker_json("x", &d, &ev, EventVerbosity::All);
        assert_eq!(j["followup_action"], "action_session_start");
        assert_eq!(j["latest_message"]["text"], Value::Null);
    }

    #[test]
    fn until_truncates() {
        let ev = parse(
            json!([{"event": "pause", "timestamp": 1.0}, {"event": "resume", "timestamp": 3.0}, {"event": "pause", "timestamp": 2.0}]),
        );
        assert_eq!(truncate_until(&ev, Some(2.5)).len(), 1);
        assert_eq!(truncate_until(&ev, None).len(), 3);
    }
}

#[cfg(test)]
mod extend_tests {
    use super::*;

    /// The captured 3.6.21 conversations (file name, events) and a domain with their slot.
    fn captured() -> (Domain, Vec<(&'static str, Vec<Event>)>) {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/rasa/captured-3.6.21/"
        );
        let mut domain = Domain::empty();
        domain.slots.insert(
            0,
            crate::domain::Slot::implicit("bench_slot", crate::domain::SlotKind::Any),
        );
        let conversations = ["tracker-ALL.json", "conv1-tracker-ALL.json"]
            .into_iter()
            .map(|file| {
                let t: Value =
                    serde_json::from_str(&std::fs::read_to_string(format!("{dir}{file}")).unwrap())
                        .unwrap();
                (
                    file,
                    Event::list_from_json(t["events"].as_array().unwrap()).unwrap(),
                )
            })
            .collect();
        (domain, conversations)
    }

    #[test]
    fn extending_equals_recomputing_at_every_split() {
        let (domain, conversations) = captured();
        for (file, events) in conversations {
            let full = serde_json::to_string(&TrackerView {
                sender_id: "x",
                events: &events,
                state: &TrackerState::compute(&domain, &events),
                verbosity: EventVerbosity::All,
            })
            .unwrap();
            for k in 0..=events.len() {
                let mut st = TrackerState::compute(&domain, &events[..k]);
                st.extend(&domain, &events, k);
                let got = serde_json::to_string(&TrackerView {
                    sender_id: "x",
                    events: &events,
                    state: &st,
                    verbosity: EventVerbosity::All,
                })
                .unwrap();
                assert_eq!(got, full, "{file} split at {k}");
            }
        }
    }

    #[test]
    fn extending_by_the_new_events_alone_equals_recomputing() {
        let (domain, conversations) = captured();
        let user = |t: &str| {
            serde_json::json!({"event": "user", "text": t, "timestamp": 5.0,
                "parse_data": {"intent": {"name": t}, "entities": [{"entity": "e", "value": t}]}})
        };
        let act = |n: &str| serde_json::json!({"event": "action", "name": n, "timestamp": 6.0});
        // A loop whose trigger message is a user event extended by an earlier call, and
        // entities added to a user message of an earlier call.
        let loops = Event::list_from_json(&[
            act("action_listen"),
            user("hi"),
            serde_json::json!({"event": "active_loop", "name": "form", "timestamp": 7.0}),
            serde_json::json!({"event": "entities", "entities": [{"entity": "x", "value": 1}]}),
            serde_json::json!({"event": "restart", "timestamp": 8.0}),
            user("bye"),
        ])
        .unwrap();
        let listen_loops = {
            let mut l = loops.clone();
            l.insert(2, Event::action(ACTION_LISTEN));
            l.extend(
                Event::list_from_json(&[
                    act("utter_bye"),
                    serde_json::json!({"event": "rewind"}),
                    act("action_listen"),
                    serde_json::json!({"event": "undo"}),
                ])
                .unwrap(),
            );
            l
        };
        let all = conversations
            .into_iter()
            .chain([("loops", loops), ("listen-loops", listen_loops)]);
        for (file, events) in all {
            let texts = EventTexts::of(&events);
            let full = TrackerState::compute(&domain, &events);
            let bytes = |st: &TrackerState, verbosity| {
                TextTrackerView {
                    sender_id: "x",
                    texts: &texts,
                    state: st,
                    verbosity,
                }
                .to_json_bytes()
                .unwrap()
            };
            for k in 0..=events.len() {
                for step in [1, 3, events.len()] {
                    let mut st = TrackerState::compute(&domain, &events[..k]);
                    let mut at = k;
                    while at < events.len() {
                        let to = (at + step).min(events.len());
                        if st.extend_by(&domain, &events[at..to]).is_err() {
                            assert!(events[at..to].iter().any(|e| matches!(
                                e.kind,
                                EventKind::Rewind
                                    | EventKind::Undo
                                    | EventKind::ActiveLoop { name: Some(_) }
                            )));
                            st.extend(&domain, &events[..to], at);
                        }
                        at = to;
                        // Answered in between: the latest message written then must not
                        // outlive a change to it.
                        let so_far = EventTexts::of(&events[..to]);
                        TextTrackerView {
                            sender_id: "x",
                            texts: &so_far,
                            state: &st,
                            verbosity: EventVerbosity::None,
                        }
                        .to_json_bytes()
                        .unwrap();
                    }
                    for verbosity in [EventVerbosity::All, EventVerbosity::AfterRestart] {
                        assert_eq!(
                            String::from_utf8(bytes(&st, verbosity)).unwrap(),
                            String::from_utf8(bytes(&full, verbosity)).unwrap(),
                            "{file} from {k} by {step}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_text_view_refuses_a_state_of_other_events() {
        let events = Event::list_from_json(&[serde_json::json!({"event": "pause"})]).unwrap();
        let state = TrackerState::compute(&Domain::empty(), &[]);
        let view = TextTrackerView {
            sender_id: "x",
            texts: &EventTexts::of(&events),
            state: &state,
            verbosity: EventVerbosity::All,
        };
        assert!(view.to_json_bytes().is_err());
    }

    #[test]
    fn spliced_event_texts_give_the_serialised_tracker_byte_for_byte() {
        let (domain, mut conversations) = captured();
        // And one long enough for its texts to span several chunks (> 64 KiB each), with
        // restarts inside, so that every listing crosses chunk boundaries.
        let long: Vec<Event> = conversations
            .iter()
            .flat_map(|(_, events)| events.iter().cloned())
            .cycle()
            .take(3000)
            .collect();
        conversations.push(("long", long));
        for (file, events) in conversations {
            let texts = EventTexts::of(&events);
            let state = TrackerState::compute(&domain, &events);
            for verbosity in [
                EventVerbosity::All,
                EventVerbosity::AfterRestart,
                EventVerbosity::Applied,
                EventVerbosity::None,
            ] {
                let view = TrackerView {
                    sender_id: "x",
                    events: &events,
                    state: &state,
                    verbosity,
                };
                let serialised = serde_json::to_vec(&view).unwrap();
                assert_eq!(
                    String::from_utf8(view.to_json_bytes(Some(&texts)).unwrap()).unwrap(),
                    String::from_utf8(serialised.clone()).unwrap(),
                    "{file} {verbosity:?}"
                );
                // Texts out of step with the events are not used.
                let short = EventTexts::of(&events[1..]);
                assert_eq!(view.to_json_bytes(Some(&short)).unwrap(), serialised);
            }
        }
    }

    #[test]
    fn the_latest_message_before_any_user_message_is_written_as_built() {
        let state = TrackerState::compute(&Domain::empty(), &[]);
        assert_eq!(
            std::str::from_utf8(super::NO_LATEST_MESSAGE).unwrap(),
            state.latest_message_json(&[]).to_string()
        );
    }
}
