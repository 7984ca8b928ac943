//! The dialogue engine: what happens when a user speaks (Rasa 3.6's `MessageProcessor`).
//!
//! Per message, under the conversation's lock: session check → parse → `user` event →
//! `action_extract_slots` → predict and run actions until `action_listen` (at most
//! `max_predictions`) → append the new events → publish. Only the new events are written.

pub mod action_server;
pub mod actions;
pub mod extract;
pub mod forms;
pub mod interpreter;
pub mod output;
pub mod reminders;
pub mod responses;

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::agent::Agent;
use crate::conversations::{ConversationError, Log, LogTexts};
use crate::engine::tracker::{ACTION_LISTEN, ACTION_SESSION_START};
use crate::engine::{Event, EventKind, TrackerState};
use crate::http::state_cache::{Stories, Warm};
use crate::http::{ApiError, AppState};
use crate::policy::StoryEvent;

pub use action_server::ActionServer;

/// A message as a channel or the API hands it over.
#[derive(Debug, Clone, Default)]
pub struct UserMessage {
    pub sender_id: String,
    pub text: Option<String>,
    /// Given by the client (`/messages` with `parse_data`): used instead of NLU.
    pub parse_data: Option<Map<String, Value>>,
    pub input_channel: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub message_id: Option<String>,
    /// `trigger_intent`: the message is not the user's but an external event.
    pub external: bool,
}

/// What a turn produced.
pub struct TurnOutput {
    pub log: Log,
    /// The bot's messages as channels deliver them (`recipient_id`, `text`, …).
    pub messages: Vec<output::ChannelMessage>,
}

/// The conversation being worked on during one turn: stored events plus the new ones.
///
/// A warm turn (the conversation's tracker state was remembered) does not parse the stored
/// events: the state and the policies' featurisation carry what the next
/// prediction needs, and the turn's own events are the ones it looks at. The stored events
/// are parsed from their texts only when a step reaches back for one (an undo, a rewind or a
/// loop's activation replays them; a custom action gets the session's events). So the cache
/// keeps a dialogue conversation as texts only, and a turn's memory is its new events.
pub struct Turn<'a> {
    pub agent: &'a Agent,
    pub sender_id: &'a str,
    /// The conversation's events from index `first` on (the turn's own, and the stored ones
    /// once they had to be parsed: then `first` is 0).
    events: Vec<Event>,
    first: usize,
    /// The stored events before `first`, parsed from `stored_texts` at the first look back.
    older: std::sync::OnceLock<Vec<Event>>,
    /// A stored text that did not parse (or could not be fetched) when the turn looked back:
    /// the turn fails with it instead of storing anything (see [`Turn::check`]).
    damaged: std::sync::OnceLock<crate::conversations::ConversationError>,
    /// The JSON texts of the stored events (their count is [`Turn::stored`]), fetched from
    /// the store at the first look back when it keeps them.
    stored_texts: LogTexts,
    /// The epoch of the stored log the turn started from.
    pub epoch: u64,
    /// The state of the events as last computed (see [`Turn::state`]); shared with the callers
    /// of `state()` rather than copied for each (its applied list grows with the conversation).
    state: std::sync::Mutex<Option<Arc<TrackerState>>>,
    /// How far the applied events are folded into the featurisation (see [`Turn::predict`]).
    stories: std::sync::Mutex<Option<Stories>>,
    pub channel: Option<String>,
    /// What was remembered of the conversation before the turn, kept only when the turn may
    /// be refused for the conversation's size ([`ROLLBACK_MARGIN`]): put back then, instead of
    /// the next request rebuilding the state from every stored event.
    rollback: Option<Warm>,
}

/// A turn is assumed to add at most this many events: within this many of
/// `--max-events-per-conversation`, a turn keeps a copy of the remembered state to restore
/// should its events be refused. Kept only there, as the copy costs O(conversation) (the
/// state's list of applied events: ~0.3 ms a refused REST turn at 100,000 events, against
/// ~0.4 s rebuilding the state from them). A larger turn refused there is answered as before,
/// and the next request rebuilds the state.
const ROLLBACK_MARGIN: usize = 100;

impl<'a> Turn<'a> {
    /// Takes the conversation over. The caller detached the log from the cache
    /// (`Conversations::detach`), so its texts are usually not copied. The state and
    /// featurisation remembered from the previous request are picked up where they stopped (only the
    /// events they have not seen are parsed); parsed events the log came with (a store read)
    /// are used as they are.
    fn new(
        app: &AppState,
        agent: &'a Agent,
        sender_id: &'a str,
        log: Log,
        channel: Option<String>,
    ) -> Result<Turn<'a>, ApiError> {
        let epoch = log.epoch;
        let stored = log.len();
        let warm = app.states.take_for_log(sender_id, &agent.domain, &log)?;
        let rollback = (stored.saturating_add(ROLLBACK_MARGIN) > app.conversations.max_events)
            .then(|| warm.clone());
        let (parsed, stored_texts) = log.into_parts();
        let (events, first) = match parsed {
            Some(all) => (all, 0),
            // A turn adds a handful of events (user, action, bot, action_listen, …):
            // room for them at once instead of growing from four.
            None => (Vec::with_capacity(8), stored),
        };
        Ok(Turn {
            agent,
            sender_id,
            events,
            first,
            older: std::sync::OnceLock::new(),
            damaged: std::sync::OnceLock::new(),
            stored_texts,
            epoch,
            state: std::sync::Mutex::new(Some(warm.state)),
            stories: std::sync::Mutex::new(warm.stories.map(|s| *s)),
            channel,
            rollback,
        })
    }

    /// How many events were stored when the turn began.
    pub fn stored(&self) -> usize {
        self.stored_texts.len()
    }

    /// How many events the conversation has, the turn's included.
    pub fn len(&self) -> usize {
        self.first + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event `i` of the conversation (`None` past the end).
    pub fn event(&self, i: usize) -> Option<&Event> {
        match i.checked_sub(self.first) {
            Some(k) => self.events.get(k),
            None => self.older().get(i),
        }
    }

    /// The turn's events from index `from` on (`from` not before the turn's first event).
    pub fn events_since(&self, from: usize) -> &[Event] {
        &self.events[from.saturating_sub(self.first).min(self.events.len())..]
    }

    /// Index of the last event matching `f`, looking back into the stored events only if
    /// none of the parsed ones matches.
    pub fn rposition(&self, f: impl Fn(&Event) -> bool) -> Option<usize> {
        if let Some(k) = self.events.iter().rposition(&f) {
            return Some(self.first + k);
        }
        self.older().iter().rposition(f)
    }

    /// Every event of the conversation, in one slice (parsing the stored ones if they were
    /// not yet). Copies them unless [`Self::materialize`] was called: the paths that need
    /// every event (a custom action's tracker, an undo, a rewind, a loop's activation, a
    /// form's step) call it first.
    pub fn all_events(&self) -> std::borrow::Cow<'_, [Event]> {
        if self.first == 0 {
            return std::borrow::Cow::Borrowed(&self.events);
        }
        let mut all = Vec::with_capacity(self.len());
        all.extend_from_slice(self.older());
        all.extend_from_slice(&self.events);
        std::borrow::Cow::Owned(all)
    }

    /// The stored events before `first`, parsed once.
    fn older(&self) -> &[Event] {
        self.older.get_or_init(|| {
            let parsed = self.stored_texts.get().and_then(|texts| {
                texts
                    .parse(0..self.first)
                    .map_err(|source| ConversationError::Corrupt {
                        id: self.sender_id.to_string(),
                        source,
                    })
            });
            parsed.unwrap_or_else(|e| {
                // Texts were parsed when they were written or read, so this is damage (or a
                // store that lost them); the turn is refused in `check`, never half-stored.
                let _ = self.damaged.set(e);
                Vec::new()
            })
        })
    }

    /// Puts the stored events in front of the turn's own, parsed (after this, `first` is 0).
    pub fn materialize(&mut self) {
        if self.first == 0 {
            return;
        }
        self.older();
        let mut all = self.older.take().unwrap_or_default();
        all.append(&mut self.events);
        self.events = all;
        self.first = 0;
    }

    /// Fails with the damage a look back found, if any.
    fn check(&self) -> Result<(), ApiError> {
        match self.damaged.get() {
            Some(e) => Err(e.clone().into()),
            None => Ok(()),
        }
    }

    /// The state and featurisation of all the turn's events, to remember for the next
    /// request, and the turn's events from index `first` on with that index.
    fn into_warm(self) -> (Warm, Vec<Event>, usize, LogTexts) {
        self.state();
        // The featurisation brought up to the turn's last event while its events are at hand
        // (the last ones, e.g. the closing `action_listen`, came after the last prediction):
        // the next turn would have to parse the stored events to fold them in.
        if self
            .stories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            self.with_stories(|_| ());
        }
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .expect("just computed");
        let stories = self
            .stories
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .map(Box::new);
        (
            Warm { state, stories },
            self.events,
            self.first,
            self.stored_texts,
        )
    }

    /// Adds an event: stamped with the model's ids, as 3.6 does for every new event. An event
    /// whose effect on the state replays earlier ones (undo, rewind, a loop's activation)
    /// brings the stored events in first.
    pub fn push(&mut self, mut e: Event) {
        if matches!(
            e.kind,
            EventKind::Rewind | EventKind::Undo | EventKind::ActiveLoop { name: Some(_) }
        ) {
            self.materialize();
        }
        e.stamp(&self.agent.stamp);
        self.events.push(e);
    }

    /// Drops the turn's events from index `len` on (never stored ones); the state and story
    /// events are recomputed at the next use.
    pub fn truncate(&mut self, len: usize) {
        self.events.truncate(len.max(self.first) - self.first);
        self.invalidate();
    }

    /// Takes the turn's events from index `from` on (never stored ones) out of the turn; the
    /// state and featurisation are recomputed at the next use.
    pub fn drain_from(&mut self, from: usize) -> Vec<Event> {
        let k = from.max(self.first) - self.first;
        let out = self.events.split_off(k.min(self.events.len()));
        self.invalidate();
        out
    }

    /// The tracker state of the events so far. Kept between calls and extended by the events
    /// pushed since (a turn asks for it several times per prediction).
    pub fn state(&self) -> Arc<TrackerState> {
        let mut cached = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let len = self.len();
        match cached.as_mut() {
            Some(st) if st.seen == len => {}
            // Copies only if a caller still holds the previous state.
            Some(st) if st.seen < len => {
                let st = Arc::make_mut(st);
                let seen = st.seen;
                let extended = seen >= self.first
                    && st
                        .extend_by(&self.agent.domain, &self.events[seen - self.first..])
                        .is_ok();
                if !extended {
                    st.extend(&self.agent.domain, &self.all_events(), seen)
                }
            }
            _ => {
                *cached = Some(Arc::new(TrackerState::compute(
                    &self.agent.domain,
                    &self.all_events(),
                )))
            }
        }
        cached.as_ref().expect("just computed").clone()
    }

    /// Recomputes the state and featurisation at their next use, from all the events.
    fn invalidate(&mut self) {
        self.materialize();
        *self.state.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
        *self.stories.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The tracker JSON an action server gets: every event of the latest session.
    pub fn tracker_json(&self) -> Value {
        let events = self.all_events();
        let start = events
            .iter()
            .rposition(|e| e.is_action(ACTION_SESSION_START))
            .unwrap_or(0);
        let mut t = crate::engine::tracker_json(
            self.sender_id,
            &self.agent.domain,
            &events[start..],
            crate::engine::EventVerbosity::All,
        );
        // The state must reflect the whole conversation, the listed events the session.
        let full = crate::engine::tracker_json(
            self.sender_id,
            &self.agent.domain,
            &events,
            crate::engine::EventVerbosity::None,
        );
        if let (Some(t), Some(full)) = (t.as_object_mut(), full.as_object()) {
            for (k, v) in full {
                if k != "events" {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        t
    }

    /// What the policies predict next. Only the story events added since the last
    /// prediction (of this turn or the conversation's previous one) are featurised.
    pub fn predict(&self) -> crate::policy::Prediction {
        self.with_stories(|s| {
            self.agent
                .model
                .policies
                .predict_featurised(&self.agent.domain, &mut s.featurised)
        })
    }

    /// Runs `f` on the featurisation, brought up to date with the applied events.
    fn with_stories<R>(&self, f: impl FnOnce(&mut Stories) -> R) -> R {
        let st = self.state();
        let mut cached = self.stories.lock().unwrap_or_else(|p| p.into_inner());
        let stories = cached.get_or_insert_with(Default::default);
        let is_prefix =
            stories.generation == st.applied_generation && stories.applied <= st.applied.len();
        if !is_prefix {
            // A new state, or undone, rewound or restarted events: convert (and featurise)
            // from scratch.
            *stories = Stories {
                generation: st.applied_generation,
                ..Stories::default()
            };
        }
        for &i in &st.applied[stories.applied..] {
            if let Some(e) = self.event(i).and_then(story_event) {
                stories.featurised.fold(&self.agent.domain, &e);
            }
        }
        stories.applied = st.applied.len();
        f(stories)
    }
}

/// Converts an event to what the policies featurise.
pub fn story_event(e: &Event) -> Option<StoryEvent> {
    Some(match &e.kind {
        EventKind::User {
            text, parse_data, ..
        } => StoryEvent::User {
            intent: e.intent_name().map(str::to_string),
            entities: parse_data
                .get("entities")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|x| {
                            Some((
                                x.get("entity")?.as_str()?.to_string(),
                                x.get("value").cloned().unwrap_or(Value::Null),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            text: text.clone(),
        },
        EventKind::Action { name: Some(n), .. } => StoryEvent::Action(n.clone()),
        EventKind::Slot { name, value } => StoryEvent::Slot {
            name: name.clone(),
            value: value.clone(),
        },
        EventKind::ActiveLoop { name } => StoryEvent::ActiveLoop(name.clone()),
        EventKind::LoopInterrupted { is_interrupted } => {
            StoryEvent::LoopInterrupted(*is_interrupted)
        }
        EventKind::ActionExecutionRejected { name: Some(n), .. } => {
            StoryEvent::ActionExecutionRejected(n.clone())
        }
        EventKind::Restart => StoryEvent::Restart,
        EventKind::SessionStarted => StoryEvent::SessionStarted,
        EventKind::Followup { name } => StoryEvent::Followup(name.clone()),
        _ => return None,
    })
}

/// Follow-up actions, then RulePolicy's built-in rules: the intents `restart`, `back` and `session_start` run
/// `action_restart`, `action_back` and `action_session_start` right away.
fn default_rule(turn: &Turn<'_>, after_user: bool) -> Option<crate::policy::Prediction> {
    let st = turn.state();
    // A pending follow-up (e.g. `action_session_start` after a restart) comes first.
    if let Some(f) = &st.followup_action {
        if turn.agent.domain.has_action(f) {
            return Some(crate::policy::Prediction {
                action: f.clone(),
                policy: "followup_action".into(),
                confidence: 1.0,
            });
        }
    }
    if !after_user {
        return None;
    }
    let intent = st
        .latest_message
        .as_ref()
        .and_then(|(i, _)| turn.event(*i))
        .and_then(Event::intent_name)?;
    let action = match intent {
        "restart" => "action_restart",
        "back" => "action_back",
        "session_start" => ACTION_SESSION_START,
        _ => return None,
    };
    Some(crate::policy::Prediction {
        action: action.into(),
        policy: "RulePolicy".into(),
        confidence: 1.0,
    })
}

/// Runs turns. One per server; cheap to share.
pub struct Processor {
    pub action_server: Option<ActionServer>,
    /// The circuit breaker: most actions predicted after one message (Rasa: 10).
    pub max_predictions: usize,
    /// The `nlu:` connector, when the endpoints YAML configures one.
    pub nlu: Option<crate::plugins::NluHandle>,
}

impl Processor {
    pub fn new(action_server: Option<ActionServer>) -> Processor {
        Processor {
            action_server,
            max_predictions: 10,
            nlu: None,
        }
    }

    /// The session check: a new conversation, or one whose last user message is older than
    /// `session_expiration_time`, starts a session (`action_session_start`).
    async fn ensure_session(
        &self,
        turn: &mut Turn<'_>,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<(), ApiError> {
        let expired = {
            let minutes = turn.agent.domain.session_config.session_expiration_time;
            let last_user = turn.state().latest_user_time;
            minutes > 0.0
                && last_user.is_some_and(|t| crate::engine::event::now() - t > minutes * 60.0)
        };
        if turn.is_empty() || expired {
            turn.push(Event::action_with(
                ACTION_SESSION_START,
                Some("followup_action"),
                Some(1.0),
            ));
            let events = actions::session_start(turn, metadata);
            for e in events {
                turn.push(e);
            }
        }
        Ok(())
    }

    /// Parses the text: the `/intent{…}` shortcut, else the model's NLU.
    async fn parse(&self, turn: &Turn<'_>, msg: &UserMessage) -> interpreter::Parsed {
        let text = msg.text.clone().unwrap_or_default();
        interpreter::parse_with_connector(
            self.nlu.as_ref(),
            &turn.agent.model,
            &turn.agent.domain,
            &text,
            turn.sender_id,
        )
        .await
    }

    /// Logs a user message: session check, parse, `user` event, `action_extract_slots`.
    async fn log_message(&self, turn: &mut Turn<'_>, msg: &UserMessage) -> Result<(), ApiError> {
        self.ensure_session(turn, msg.metadata.as_ref()).await?;
        // The NLU's result is moved into the event, not copied: it is a tree of maps.
        let parsed = match &msg.parse_data {
            Some(p) => interpreter::Parsed {
                data: p.clone(),
                intent_ranking: None,
            },
            None => self.parse(turn, msg).await,
        };
        let mut metadata = msg.metadata.clone().unwrap_or_default();
        if msg.external {
            metadata.insert("is_external".into(), json!(true));
        }
        let mut user = Event::new(EventKind::User {
            text: msg.text.clone(),
            parse_data: parsed.data,
            intent_ranking: parsed.intent_ranking,
            input_channel: msg.input_channel.clone(),
            message_id: Some(
                msg.message_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            ),
        });
        if !metadata.is_empty() {
            user.metadata = Arc::new(metadata);
        }
        turn.push(user);
        for e in actions::extract_slots_events(turn) {
            turn.push(e);
        }
        Ok(())
    }

    /// Predicts and runs actions until `action_listen` (or the circuit breaker).
    async fn predict_and_run(&self, turn: &mut Turn<'_>) -> Result<(), ApiError> {
        let mut predicted = 0;
        let mut after_user = matches!(turn.state().latest_action_name(), Some(ACTION_LISTEN));
        loop {
            if predicted >= self.max_predictions {
                tracing::warn!(
                    conversation = turn.sender_id,
                    "circuit breaker tripped: stopped predicting after {predicted} actions"
                );
                break;
            }
            let prediction = match default_rule(turn, after_user) {
                Some(p) => p,
                None => turn.predict(),
            };
            if after_user {
                turn.push(Event::new(EventKind::UserFeaturization {
                    use_text_for_featurization: false,
                }));
                after_user = false;
            }
            predicted += 1;
            let name = prediction.action.clone();
            match actions::run(self, turn, &name).await {
                Ok(events) => {
                    turn.push(Event::action_with(
                        &name,
                        Some(&prediction.policy),
                        Some(prediction.confidence),
                    ));
                    for e in events {
                        turn.push(e);
                    }
                }
                Err(actions::ActionOutcome::Rejected(reason)) => {
                    tracing::info!(conversation = turn.sender_id, action = %name, "action rejected: {reason}");
                    turn.push(Event::new(EventKind::ActionExecutionRejected {
                        name: Some(name.clone()),
                        policy: Some(prediction.policy.clone()),
                        confidence: Some(prediction.confidence),
                    }));
                    continue;
                }
                Err(actions::ActionOutcome::Failed(reason)) => {
                    // As Rasa: the failure is logged, the action is logged without its effects,
                    // and the conversation goes on.
                    tracing::error!(conversation = turn.sender_id, action = %name, "{reason}");
                    turn.push(Event::action_with(
                        &name,
                        Some(&prediction.policy),
                        Some(prediction.confidence),
                    ));
                }
            }
            if name == ACTION_LISTEN {
                break;
            }
        }
        Ok(())
    }

    /// A user message through the whole turn (REST channel, `respond`).
    pub async fn handle_message(
        &self,
        state: &AppState,
        agent: Arc<Agent>,
        msg: UserMessage,
    ) -> Result<TurnOutput, ApiError> {
        let conv = &state.conversations;
        conv.locked(&msg.sender_id, || async {
            let log = conv.read(&msg.sender_id).await?.unwrap_or_else(Log::empty);
            conv.detach(&msg.sender_id);
            let mut turn = Turn::new(
                state,
                &agent,
                &msg.sender_id,
                log,
                msg.input_channel.clone(),
            )?;
            self.log_message(&mut turn, &msg).await?;
            // The state is let go before the turn goes on: held, it would make the turn's
            // next extension of the state copy it (its `applied` list grows with the
            // conversation).
            let predict = {
                let st = turn.state();
                let restart_asked = st
                    .latest_message
                    .as_ref()
                    .and_then(|(i, _)| turn.event(*i))
                    .and_then(Event::intent_name)
                    == Some("restart");
                !st.paused || restart_asked
            };
            if predict {
                self.predict_and_run(&mut turn).await?;
            }
            self.finish(state, turn).await
        })
        .await
    }

    /// `/messages`: log the message without predicting.
    pub async fn log_only(
        &self,
        state: &AppState,
        agent: Arc<Agent>,
        msg: UserMessage,
    ) -> Result<TurnOutput, ApiError> {
        let conv = &state.conversations;
        conv.locked(&msg.sender_id, || async {
            let log = conv.read(&msg.sender_id).await?.unwrap_or_else(Log::empty);
            conv.detach(&msg.sender_id);
            let mut turn = Turn::new(
                state,
                &agent,
                &msg.sender_id,
                log,
                msg.input_channel.clone(),
            )?;
            self.log_message(&mut turn, &msg).await?;
            self.finish(state, turn).await
        })
        .await
    }

    /// `/execute`: run one named action as if predicted, without a prediction loop after it.
    pub async fn execute(
        &self,
        state: &AppState,
        agent: Arc<Agent>,
        sender_id: &str,
        action: &str,
        policy: Option<String>,
        confidence: Option<f64>,
    ) -> Result<TurnOutput, ApiError> {
        if !agent.domain.has_action(action) {
            return Err(ApiError::bad_parameter(
                format!("Unknown action '{action}': it is not in the domain."),
                "name",
                "body",
            ));
        }
        let conv = &state.conversations;
        conv.locked(sender_id, || async {
            let log = conv
                .read(sender_id)
                .await?
                .ok_or_else(ApiError::conversation_not_found)?;
            conv.detach(sender_id);
            let mut turn = Turn::new(state, &agent, sender_id, log, None)?;
            match actions::run(self, &mut turn, action).await {
                Ok(events) => {
                    turn.push(Event::action_with(action, policy.as_deref(), confidence));
                    for e in events {
                        turn.push(e);
                    }
                }
                Err(actions::ActionOutcome::Rejected(r))
                | Err(actions::ActionOutcome::Failed(r)) => {
                    return Err(ApiError::internal(
                        "ConversationError",
                        format!("An unexpected error occurred. Error: {r}"),
                    ));
                }
            }
            self.finish(state, turn).await
        })
        .await
    }

    /// `/trigger_intent`: an external intent, then the prediction loop.
    pub async fn trigger_intent(
        &self,
        state: &AppState,
        agent: Arc<Agent>,
        sender_id: &str,
        intent: &str,
        entities: Vec<Value>,
    ) -> Result<TurnOutput, ApiError> {
        let conv = &state.conversations;
        conv.locked(sender_id, || async {
            let log = conv.read(sender_id).await?.unwrap_or_else(Log::empty);
            conv.detach(sender_id);
            let mut turn = Turn::new(state, &agent, sender_id, log, None)?;
            // The channel of the last user message that named one.
            let channel = match turn.state().latest_input_channel.clone() {
                Some(c) => Some(c),
                None => turn
                    .rposition(|e| {
                        matches!(
                            &e.kind,
                            EventKind::User {
                                input_channel: Some(_),
                                ..
                            }
                        )
                    })
                    .and_then(|i| match &turn.event(i)?.kind {
                        EventKind::User { input_channel, .. } => input_channel.clone(),
                        _ => None,
                    }),
            };
            turn.channel = channel.clone();
            let parse_data: Map<String, Value> = serde_json::from_value(json!({
                "intent": {"name": intent, "confidence": 1.0},
                "entities": entities,
            }))
            .unwrap_or_default();
            let msg = UserMessage {
                sender_id: sender_id.into(),
                text: Some(format!("EXTERNAL: {intent}")),
                parse_data: Some(parse_data),
                input_channel: channel,
                external: true,
                ..Default::default()
            };
            self.log_message(&mut turn, &msg).await?;
            self.predict_and_run(&mut turn).await?;
            self.finish(state, turn).await
        })
        .await
    }

    /// Stores the turn's new events and collects its bot messages.
    async fn finish(&self, state: &AppState, mut turn: Turn<'_>) -> Result<TurnOutput, ApiError> {
        let (sender_id, epoch, stored, agent) =
            (turn.sender_id, turn.epoch, turn.stored(), turn.agent);
        turn.check()?;
        let messages: Vec<output::ChannelMessage> = turn
            .events_since(stored)
            .iter()
            .flat_map(|e| output::channel_messages(sender_id, e))
            .collect();
        let rollback = turn.rollback.take();
        let (warm, events, first, texts) = turn.into_warm();
        let log = match state
            .conversations
            .append_turn(sender_id, epoch, stored, events, first, texts)
            .await
        {
            Ok(log) => log,
            Err(e) => {
                // Refused for its size, nothing stored: the conversation stays as it was
                // (`append_turn` put its log back in the cache), and so does its state.
                if let (ConversationError::TooManyEvents { .. }, Some(before)) = (&e, rollback) {
                    state.states.put(sender_id, epoch, &agent.domain, before);
                }
                return Err(e.into());
            }
        };
        state.states.put(sender_id, log.epoch, &agent.domain, warm);
        // Side effects only once the events are stored.
        state.reminders.handle(
            &state.self_ref(),
            sender_id,
            &log.events_from(sender_id, stored)?,
        );
        Ok(TurnOutput { log, messages })
    }
}
