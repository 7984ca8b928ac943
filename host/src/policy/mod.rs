//! Dialogue policies: Rasa's dialogue-state featurisation, the policies Colloquy implements
//! (Memoization, AugmentedMemoization, Rule, 0.x Mapping/Form/Fallback) and the ensemble
//! that picks one prediction with Rasa's priority rules.

pub mod mapping;
pub mod memoization;
pub mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Domain;

pub use mapping::{FallbackPolicy, FormPolicy, MappingPolicy};
pub use memoization::MemoizationPolicy;
pub use rules::{RuleContradiction, RulePolicy};

pub const ACTION_LISTEN: &str = "action_listen";

/// One event of a story, a rule, or a live conversation, as the policies see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoryEvent {
    /// A user message; `entities` are (entity type, value) pairs.
    User {
        intent: Option<String>,
        entities: Vec<(String, Value)>,
        text: Option<String>,
    },
    Action(String),
    Slot {
        name: String,
        value: Value,
    },
    ActiveLoop(Option<String>),
    LoopInterrupted(bool),
    ActionExecutionRejected(String),
    Restart,
    SessionStarted,
    Followup(String),
}

/// The dialogue state before an action: what Rasa featurises (intent and the entities the
/// intent uses, previous action, active loop, featurised slots).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub entities: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prev_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active_loop: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub slots: BTreeMap<String, String>,
}

impl State {
    fn is_empty(&self) -> bool {
        *self == State::default()
    }
}

/// The conversation as far as state featurisation is concerned.
#[derive(Debug, Clone, Default)]
pub struct DialogueTracker {
    pub intent: Option<String>,
    pub entities: Vec<String>,
    pub prev_action: Option<String>,
    pub active_loop: Option<String>,
    pub loop_rejected: bool,
    pub slots: BTreeMap<String, Value>,
    pub followup: Option<String>,
}

impl DialogueTracker {
    pub fn apply(&mut self, domain: &Domain, e: &StoryEvent) {
        match e {
            StoryEvent::User {
                intent, entities, ..
            } => {
                self.intent = intent.clone();
                self.entities = domain
                    .used_entities(intent.as_deref(), entities.iter().map(|(e, _)| e.as_str()));
                self.followup = None;
            }
            StoryEvent::Action(a) => {
                self.prev_action = Some(a.clone());
                if self.active_loop.as_deref() == Some(a.as_str()) {
                    self.loop_rejected = false;
                }
                self.followup = None;
            }
            StoryEvent::Slot { name, value } => {
                self.slots.insert(name.clone(), value.clone());
            }
            StoryEvent::ActiveLoop(l) => {
                self.active_loop = l.clone();
                self.loop_rejected = false;
            }
            StoryEvent::ActionExecutionRejected(a) => {
                if self.active_loop.as_deref() == Some(a.as_str()) {
                    self.loop_rejected = true;
                }
            }
            StoryEvent::LoopInterrupted(_) => {}
            StoryEvent::Restart | StoryEvent::SessionStarted => *self = DialogueTracker::default(),
            StoryEvent::Followup(a) => self.followup = Some(a.clone()),
        }
    }

    pub fn state(&self, domain: &Domain) -> State {
        let slots = self
            .slots
            .iter()
            .filter_map(|(n, v)| {
                domain
                    .slot(n)
                    .and_then(|s| s.feature(v))
                    .map(|f| (n.clone(), f))
            })
            .collect();
        State {
            intent: self.intent.clone(),
            entities: self.entities.clone(),
            prev_action: self.prev_action.clone(),
            active_loop: self.active_loop.clone(),
            slots,
        }
    }
}

/// Events of the current session: everything after the last restart / session start, without
/// the leading `action_session_start`.
pub fn session_events(events: &[StoryEvent]) -> &[StoryEvent] {
    let start = events
        .iter()
        .rposition(|e| matches!(e, StoryEvent::Restart | StoryEvent::SessionStarted))
        .map_or(0, |i| i + 1);
    let mut ev = &events[start..];
    while let Some(StoryEvent::Action(a)) = ev.first() {
        if a == "action_session_start" {
            ev = &ev[1..];
        } else {
            break;
        }
    }
    ev
}

/// The states of a conversation's current session as the policies see them, kept between
/// predictions and extended with each story event as it comes (O(new events) per prediction
/// instead of O(session)). Folds exactly like [`session_events`] + [`states_with_actions`].
///
/// The story events themselves are not kept: once folded, nothing reads them again. Nor are
/// all past states: a prediction trims them to the ones the policies can look at
/// ([`PolicyEnsemble::states_needed`]), so what a conversation holds between turns does not
/// grow with its length (it did by ~0.8 kB of RSS a REST turn, P2 in docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct Featurised {
    /// Still inside the leading `action_session_start`s of the session.
    leading: bool,
    /// The states before the session's past actions (the latest ones, after trimming).
    past: Vec<State>,
    tracker: DialogueTracker,
}

impl Default for Featurised {
    fn default() -> Featurised {
        Featurised {
            // A conversation's first session starts like any other.
            leading: true,
            past: Vec::new(),
            tracker: DialogueTracker::default(),
        }
    }
}

/// Past states are trimmed when there are this many more than the policies need (so that
/// trimming, which moves the kept ones, happens once per this many actions).
const TRIM_SLACK: usize = 32;

impl Featurised {
    /// Folds in the next story event of the conversation.
    pub fn fold(&mut self, domain: &Domain, e: &StoryEvent) {
        match e {
            StoryEvent::Restart | StoryEvent::SessionStarted => {
                *self = Featurised::default();
                return;
            }
            StoryEvent::Action(a) if self.leading && a == "action_session_start" => return,
            _ => self.leading = false,
        }
        if matches!(e, StoryEvent::Action(_)) {
            let s = self.tracker.state(domain);
            // The empty state before a conversation's first `action_listen` carries nothing.
            if !s.is_empty() {
                self.past.push(s);
            }
        }
        self.tracker.apply(domain, e);
    }

    /// Folds in `events`, in order.
    pub fn fold_all<'e>(
        &mut self,
        domain: &Domain,
        events: impl IntoIterator<Item = &'e StoryEvent>,
    ) {
        for e in events {
            self.fold(domain, e);
        }
    }

    /// Forgets all but the latest `keep` past states, once they are `TRIM_SLACK` more.
    fn trim(&mut self, keep: usize) {
        if self.past.len() >= keep + TRIM_SLACK {
            self.past.drain(..self.past.len() - keep);
        }
    }
}

/// The states before each action of `events` (paired with that action), plus the current state.
pub fn states_with_actions(
    domain: &Domain,
    events: &[StoryEvent],
) -> (Vec<(State, String)>, State, DialogueTracker) {
    let mut t = DialogueTracker::default();
    let mut out = Vec::new();
    for e in events {
        if let StoryEvent::Action(a) = e {
            let s = t.state(domain);
            // The empty state before a conversation's first `action_listen` carries nothing.
            if !s.is_empty() {
                out.push((s, a.clone()));
            }
        }
        t.apply(domain, e);
    }
    let cur = t.state(domain);
    (out, cur, t)
}

/// A story or rule after checkpoints and `or` are resolved: the input of policy training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingTracker {
    pub name: String,
    pub file: String,
    pub is_rule: bool,
    /// Rule `condition:` events (applied before the steps, featurised as constraints).
    pub condition: Vec<StoryEvent>,
    /// The events, with an `action_listen` before every user message (and, for rules that
    /// wait for user input, after the last action).
    pub events: Vec<StoryEvent>,
    /// Source line of every event (0 for inserted ones).
    pub lines: Vec<usize>,
    pub conversation_start: bool,
    /// The rule/story begins at a checkpoint or `...`, i.e. not at the conversation start.
    pub starts_with_snippet: bool,
}

/// What the ensemble predicts for the next action.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub action: String,
    pub policy: String,
    pub confidence: f64,
}

impl Prediction {
    /// One score per domain action, in `Domain::action_names` order: the predicted action's
    /// confidence, 0 for the others (derived on demand: only `/predict` shows them).
    pub fn scores(&self, domain: &Domain) -> Vec<(String, f64)> {
        let mut scores: Vec<(String, f64)> = domain
            .action_names()
            .into_iter()
            .map(|a| {
                let s = if a == self.action {
                    self.confidence
                } else {
                    0.0
                };
                (a, s)
            })
            .collect();
        if !scores.iter().any(|(a, _)| *a == self.action) {
            scores.push((self.action.clone(), self.confidence));
        }
        scores
    }
}

/// A policy's answer: an action and its confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutput {
    pub action: String,
    pub confidence: f64,
}

/// One configured policy with its trained data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Policy {
    Memoization(MemoizationPolicy),
    Rule(RulePolicy),
    Mapping(MappingPolicy),
    Form(FormPolicy),
    Fallback(FallbackPolicy),
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Memoization(m) if m.augmented => "AugmentedMemoizationPolicy",
            Policy::Memoization(_) => "MemoizationPolicy",
            Policy::Rule(_) => "RulePolicy",
            Policy::Mapping(_) => "MappingPolicy",
            Policy::Form(_) => "FormPolicy",
            Policy::Fallback(_) => "FallbackPolicy",
        }
    }

    pub fn priority(&self) -> u8 {
        match self {
            Policy::Rule(r) => r.priority,
            Policy::Form(f) => f.priority,
            Policy::Fallback(f) => f.priority,
            Policy::Memoization(m) => m.priority,
            Policy::Mapping(m) => m.priority,
        }
    }

    fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        match self {
            Policy::Memoization(m) => m.predict(ctx),
            Policy::Rule(r) => r.predict(ctx),
            Policy::Mapping(m) => m.predict(ctx),
            Policy::Form(f) => f.predict(ctx),
            Policy::Fallback(f) => f.predict(ctx),
        }
    }
}

/// What a policy gets to look at when predicting.
pub struct PredictContext<'a> {
    pub domain: &'a Domain,
    /// States before the session's past actions, then the current state last: at least the
    /// latest [`PolicyEnsemble::states_needed`] past ones (earlier ones may have been
    /// trimmed). A policy that looks further back must raise that figure.
    pub states: &'a [State],
    pub tracker: &'a DialogueTracker,
}

impl PredictContext<'_> {
    pub fn current(&self) -> &State {
        self.states.last().expect("at least the current state")
    }
}

/// The trained policies of a model, in configuration order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PolicyEnsemble {
    pub policies: Vec<Policy>,
    /// `FallbackClassifier` threshold from the pipeline: below it, a message's intent becomes
    /// `nlu_fallback` (see `apply_nlu_fallback`).
    pub nlu_fallback_threshold: Option<f64>,
    pub nlu_fallback_ambiguity_threshold: Option<f64>,
    /// [`Self::states_needed`], worked out at the first prediction (a model's policies do not
    /// change once it is trained or loaded).
    #[serde(skip)]
    pub states_needed: StatesNeeded,
}

/// Derived from the policies, so it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
pub struct StatesNeeded(std::sync::OnceLock<usize>);

impl PartialEq for StatesNeeded {
    fn eq(&self, _: &StatesNeeded) -> bool {
        true
    }
}

impl PolicyEnsemble {
    /// The configured policy names, in order.
    pub fn policy_names(&self) -> Vec<&'static str> {
        self.policies.iter().map(Policy::name).collect()
    }

    /// Predicts the next action after the applied events of a conversation.
    pub fn predict(&self, domain: &Domain, applied: &[StoryEvent]) -> Prediction {
        let mut featurised = Featurised::default();
        featurised.fold_all(domain, applied);
        self.predict_featurised(domain, &mut featurised)
    }

    /// [`Self::predict`] with the session's states kept in `featurised` between calls, so
    /// that each prediction costs only the story events folded in since the last one.
    pub fn predict_featurised(&self, domain: &Domain, featurised: &mut Featurised) -> Prediction {
        featurised.trim(self.states_needed());
        let tracker = &featurised.tracker;
        if let Some(f) = &tracker.followup {
            return prediction(f, "followup_action", 1.0);
        }
        let mut states = std::mem::take(&mut featurised.past);
        states.push(tracker.state(domain));
        let prediction = self.choose(domain, &states, tracker);
        states.pop();
        featurised.past = states;
        prediction
    }

    /// How many past states a prediction needs at most: every policy looks back from the
    /// current state only (memoization its `max_history` states, a rule its length), and a
    /// rule for the start of a conversation needs to see that there are more states than it
    /// has. So with this many past states kept, plus the current one, every policy answers as
    /// with the whole session.
    pub fn states_needed(&self) -> usize {
        *self.states_needed.0.get_or_init(|| {
            let longest = self
                .policies
                .iter()
                .map(|p| match p {
                    Policy::Memoization(m) => m.max_history,
                    Policy::Rule(r) => r.rules.iter().map(|l| l.states.len()).max().unwrap_or(0),
                    Policy::Form(f) => f.unhappy.max_history,
                    Policy::Mapping(_) | Policy::Fallback(_) => 1,
                })
                .max()
                .unwrap_or(0);
            longest + 1
        })
    }

    fn choose(&self, domain: &Domain, states: &[State], tracker: &DialogueTracker) -> Prediction {
        let ctx = PredictContext {
            domain,
            states,
            tracker,
        };
        let mut best: Option<(PolicyOutput, &Policy)> = None;
        for p in &self.policies {
            if let Some(out) = p.predict(&ctx) {
                let better = match &best {
                    None => true,
                    Some((b, bp)) => {
                        out.confidence > b.confidence
                            || (out.confidence == b.confidence && p.priority() > bp.priority())
                    }
                };
                if better {
                    best = Some((out, p));
                }
            }
        }
        match best {
            Some((out, p)) => prediction(&out.action, p.name(), out.confidence),
            // Nothing applies (no rule policy to fall back on): Rasa's argmax over all-zero
            // scores is the first action, `action_listen`.
            None => prediction(
                ACTION_LISTEN,
                self.policies
                    .first()
                    .map(Policy::name)
                    .unwrap_or("MemoizationPolicy"),
                0.0,
            ),
        }
    }

    /// Rewrites a parse result like Rasa's `FallbackClassifier`: when the top intent's
    /// confidence is below the threshold (or the top two are closer than the ambiguity
    /// threshold) the intent becomes `nlu_fallback` with confidence = threshold.
    pub fn apply_nlu_fallback(&self, parse_data: &mut Value) -> bool {
        let Some(threshold) = self.nlu_fallback_threshold else {
            return false;
        };
        // `get`, not `pointer`: a pointer lookup allocates per path segment (every turn).
        let intent = parse_data.get("intent");
        let conf = intent
            .and_then(|i| i.get("confidence"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let name = intent
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() || name == "nlu_fallback" {
            return false;
        }
        let ambiguous = self.nlu_fallback_ambiguity_threshold.is_some_and(|amb| {
            let ranking = parse_data.get("intent_ranking").and_then(Value::as_array);
            let second = ranking
                .and_then(|r| r.get(1))
                .and_then(|i| i.get("confidence"))
                .and_then(Value::as_f64);
            second.is_some_and(|s| conf - s < amb)
        });
        if conf >= threshold && !ambiguous {
            return false;
        }
        let fb = serde_json::json!({"name": "nlu_fallback", "confidence": threshold});
        if let Some(o) = parse_data.as_object_mut() {
            o.insert("intent".into(), fb.clone());
            if let Some(Value::Array(r)) = o.get_mut("intent_ranking") {
                r.insert(0, fb);
            }
        }
        true
    }
}

fn prediction(action: &str, policy: &str, confidence: f64) -> Prediction {
    Prediction {
        action: action.to_string(),
        policy: policy.to_string(),
        confidence,
    }
}

/// The memoization key of a window of states.
pub(crate) fn state_key(states: &[State]) -> String {
    serde_json::to_string(states).unwrap_or_default()
}

#[cfg(test)]
mod tests;
