//! RulePolicy: rules as partial dialogue states, loop handling and the core fallback.
//!
//! A rule becomes one lookup per action it predicts: the partial states (only the features
//! the rule mentions; anything else matches) from the rule's start up to that action. The
//! lookups are matched against the end of the conversation; the most specific match wins, as
//! in Rasa (which sorts rule keys by length). Before rules, an active loop that was not
//! rejected is predicted (or `action_listen` right after it ran), as Rasa's RulePolicy does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    states_with_actions, DialogueTracker, PolicyOutput, PredictContext, State, StoryEvent,
    TrainingTracker, ACTION_LISTEN,
};
use crate::domain::Domain;

/// A dialogue state with only some features constrained.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartialState {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entities: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prev_action: Option<String>,
    /// `Some(None)`: no loop may be active (`active_loop: null` in the rule).
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "present_null"
    )]
    pub active_loop: Option<Option<String>>,
    /// Slot → required feature; `None`: the slot must be unset.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub slots: BTreeMap<String, Option<String>>,
}

/// Keeps `"active_loop": null` (must be inactive) apart from a missing key (don't care).
fn present_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl PartialState {
    pub fn matches(&self, s: &State) -> bool {
        self.intent
            .as_ref()
            .is_none_or(|i| s.intent.as_ref() == Some(i))
            && self.entities.as_ref().is_none_or(|e| &s.entities == e)
            && self
                .prev_action
                .as_ref()
                .is_none_or(|a| s.prev_action.as_ref() == Some(a))
            && self
                .active_loop
                .as_ref()
                .is_none_or(|l| &s.active_loop == l)
            && self.slots.iter().all(|(k, v)| s.slots.get(k) == v.as_ref())
    }

    fn features(&self) -> usize {
        usize::from(self.intent.is_some())
            + usize::from(self.entities.is_some())
            + usize::from(self.prev_action.is_some())
            + usize::from(self.active_loop.is_some())
            + self.slots.len()
    }

    /// A state that only repeats the rule's condition (no user turn, no previous action).
    fn is_snippet(&self) -> bool {
        self.intent.is_none() && self.prev_action.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleLookup {
    pub rule: String,
    pub states: Vec<PartialState>,
    pub action: String,
    pub conversation_start: bool,
}

impl RuleLookup {
    fn matches(&self, states: &[State]) -> bool {
        if self.states.len() > states.len()
            || (self.conversation_start && self.states.len() != states.len())
        {
            return false;
        }
        let offset = states.len() - self.states.len();
        self.states
            .iter()
            .zip(&states[offset..])
            .all(|(r, s)| r.matches(s))
    }

    fn mentions_loop(&self) -> bool {
        self.states.iter().any(|s| s.active_loop.is_some())
    }

    fn specificity(&self) -> (usize, usize) {
        (
            self.states.len(),
            self.states.iter().map(PartialState::features).sum(),
        )
    }
}

/// A rule that contradicts a story or another rule, found at train time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleContradiction {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulePolicy {
    pub priority: u8,
    pub core_fallback_threshold: f64,
    pub core_fallback_action_name: String,
    pub enable_fallback_prediction: bool,
    pub restrict_rules: bool,
    pub check_for_contradictions: bool,
    /// Sorted most specific first.
    pub rules: Vec<RuleLookup>,
}

impl Default for RulePolicy {
    fn default() -> Self {
        RulePolicy {
            priority: 6,
            core_fallback_threshold: 0.3,
            core_fallback_action_name: "action_default_fallback".into(),
            enable_fallback_prediction: true,
            restrict_rules: true,
            check_for_contradictions: true,
            rules: Vec::new(),
        }
    }
}

/// Rasa's built-in rules: intents that always trigger a default action, and listening after
/// the fallback actions.
fn default_rules() -> Vec<RuleLookup> {
    let mut out = Vec::new();
    for (intent, action) in [
        ("restart", "action_restart"),
        ("back", "action_back"),
        ("session_start", "action_session_start"),
    ] {
        out.push(RuleLookup {
            rule: format!("default rule for intent `{intent}`"),
            states: vec![PartialState {
                intent: Some(intent.into()),
                prev_action: Some(ACTION_LISTEN.into()),
                ..PartialState::default()
            }],
            action: action.into(),
            conversation_start: false,
        });
    }
    for action in [
        "action_default_fallback",
        "action_default_ask_affirmation",
        "action_default_ask_rephrase",
        "action_two_stage_fallback",
        "action_back",
    ] {
        out.push(RuleLookup {
            rule: format!("listen after `{action}`"),
            states: vec![PartialState {
                prev_action: Some(action.into()),
                ..PartialState::default()
            }],
            action: ACTION_LISTEN.into(),
            conversation_start: false,
        });
    }
    out
}

fn slot_feature(domain: &Domain, name: &str, value: &serde_json::Value) -> Option<Option<String>> {
    let slot = domain.slot(name)?;
    if !slot.influence_conversation {
        return None;
    }
    Some(slot.kind.feature(value))
}

impl RulePolicy {
    /// Compiles the rules and, if configured, checks them against stories and each other.
    pub fn train(
        &mut self,
        domain: &Domain,
        trackers: &[TrainingTracker],
    ) -> Result<(), Vec<RuleContradiction>> {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        for t in trackers.iter().filter(|t| t.is_rule) {
            let users = t
                .events
                .iter()
                .filter(|e| matches!(e, StoryEvent::User { .. }))
                .count();
            if self.restrict_rules && users > 1 {
                errors.push(RuleContradiction {
                    file: t.file.clone(),
                    line: t.lines.iter().copied().find(|l| *l > 0).unwrap_or(0),
                    message: format!(
                        "rule '{}' has {users} user turns; rules are restricted to one user turn (set `restrict_rules: false` on RulePolicy to allow more)",
                        t.name
                    ),
                });
                continue;
            }
            rules.extend(compile_rule(domain, t));
        }
        rules.extend(default_rules());
        // Stable sort: among equally specific rules the first defined wins.
        rules.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        self.rules = rules;
        if self.check_for_contradictions {
            errors.extend(self.contradictions(domain, trackers));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn find_rule(&self, states: &[State], tracker: &DialogueTracker) -> Option<&RuleLookup> {
        self.rules.iter().find(|r| {
            // After a loop rejected its input, a rule that only says "the loop runs while it
            // is active" must not bring it straight back; the unhappy-path rules decide.
            let loop_snippet = tracker.loop_rejected
                && tracker.active_loop.as_deref() == Some(r.action.as_str())
                && r.states.last().is_some_and(PartialState::is_snippet);
            !loop_snippet && r.matches(states)
        })
    }

    fn contradictions(
        &self,
        domain: &Domain,
        trackers: &[TrainingTracker],
    ) -> Vec<RuleContradiction> {
        let mut out = Vec::new();
        for t in trackers {
            let mut events = t.condition.clone();
            events.extend(t.events.iter().cloned());
            let offset = t.condition.len();
            let (pairs, _, _) = states_with_actions(domain, &events);
            // Map each action pair back to its event index for the line number.
            let action_idx: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e, StoryEvent::Action(_)))
                .map(|(i, _)| i)
                .collect();
            let skipped = action_idx.len() - pairs.len();
            let states: Vec<State> = pairs.iter().map(|(s, _)| s.clone()).collect();
            let mut tracker = DialogueTracker::default();
            for (i, (state, gold)) in pairs.iter().enumerate() {
                tracker.active_loop = state.active_loop.clone();
                let Some(rule) = self.find_rule(&states[..=i], &tracker) else {
                    continue;
                };
                if &rule.action == gold || rule.rule == t.name {
                    continue;
                }
                // Loops are handled outside rules; stories do not contain the rejections
                // that make a loop's unhappy path, so those turns cannot be judged here.
                if state.active_loop.as_deref() == Some(rule.action.as_str())
                    || (state.active_loop.is_some()
                        && state.prev_action.as_deref() == Some(ACTION_LISTEN))
                    || rule.rule.starts_with("listen after")
                {
                    continue;
                }
                let ev = action_idx.get(i + skipped).copied().unwrap_or(0);
                let line = if ev >= offset {
                    t.lines.get(ev - offset).copied().unwrap_or(0)
                } else {
                    0
                };
                out.push(RuleContradiction {
                    file: t.file.clone(),
                    line,
                    message: format!(
                        "the prediction of the action '{gold}' in {} '{}' is contradicting with rule(s) '{}' (which predicts '{}')",
                        if t.is_rule { "rule" } else { "story" },
                        t.name,
                        rule.rule,
                        rule.action
                    ),
                });
            }
        }
        out
    }

    pub fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        let t = ctx.tracker;
        let cur = ctx.current();
        let sure = |a: &str| {
            Some(PolicyOutput {
                action: a.to_string(),
                confidence: 1.0,
            })
        };
        if let Some(l) = &t.active_loop {
            if !t.loop_rejected {
                return if cur.prev_action.as_deref() == Some(l.as_str()) {
                    sure(ACTION_LISTEN)
                } else {
                    sure(l)
                };
            }
        }
        if let Some(r) = self.find_rule(ctx.states, t) {
            // A rule for a digression (chitchat during a form) ends by listening; with the
            // loop still active, Rasa returns to the loop instead.
            if r.action == ACTION_LISTEN && !r.mentions_loop() {
                if let Some(l) = &t.active_loop {
                    if cur.prev_action.as_deref() != Some(l.as_str())
                        && cur.prev_action.as_deref() != Some(ACTION_LISTEN)
                    {
                        return sure(l);
                    }
                }
            }
            return sure(&r.action);
        }
        if self.enable_fallback_prediction {
            return Some(PolicyOutput {
                action: self.core_fallback_action_name.clone(),
                confidence: self.core_fallback_threshold,
            });
        }
        None
    }
}

/// One lookup per action of the rule (except the `action_listen` that opens it).
fn compile_rule(domain: &Domain, t: &TrainingTracker) -> Vec<RuleLookup> {
    let mut p = PartialState::default();
    let apply_cond = |p: &mut PartialState, e: &StoryEvent| match e {
        StoryEvent::Slot { name, value } => {
            if let Some(f) = slot_feature(domain, name, value) {
                p.slots.insert(name.clone(), f);
            }
        }
        StoryEvent::ActiveLoop(l) => p.active_loop = Some(l.clone()),
        _ => {}
    };
    for e in &t.condition {
        apply_cond(&mut p, e);
    }
    if t.conversation_start
        && t.condition
            .iter()
            .all(|e| !matches!(e, StoryEvent::ActiveLoop(_)))
    {
        p.active_loop = Some(None);
    }
    let mut states = Vec::new();
    let mut out = Vec::new();
    for e in &t.events {
        match e {
            StoryEvent::Action(a) => {
                let opening_listen =
                    a == ACTION_LISTEN && p.prev_action.is_none() && p.intent.is_none();
                if !opening_listen {
                    states.push(p.clone());
                    out.push(RuleLookup {
                        rule: t.name.clone(),
                        states: states.clone(),
                        action: a.clone(),
                        conversation_start: t.conversation_start,
                    });
                }
                p.prev_action = Some(a.clone());
            }
            StoryEvent::User {
                intent, entities, ..
            } => {
                p.intent = intent.clone();
                p.entities =
                    if entities.is_empty() {
                        None
                    } else {
                        Some(domain.used_entities(
                            intent.as_deref(),
                            entities.iter().map(|(e, _)| e.as_str()),
                        ))
                    };
            }
            other => apply_cond(&mut p, other),
        }
    }
    out
}
