//! MemoizationPolicy and AugmentedMemoizationPolicy: exact recall of story states.
//!
//! Like Rasa, the key is the last `max_history` dialogue states before an action; a key seen
//! with two different actions is ambiguous and dropped. The augmented variant, on a miss,
//! forgets the oldest turns (cutting at `action_listen` boundaries) and retries, so a story
//! that starts mid-conversation still matches.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    state_key, states_with_actions, PolicyOutput, PredictContext, TrainingTracker, ACTION_LISTEN,
};
use crate::domain::Domain;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoizationPolicy {
    pub augmented: bool,
    pub max_history: usize,
    pub priority: u8,
    /// State-window key → action.
    pub lookup: BTreeMap<String, String>,
}

impl MemoizationPolicy {
    pub fn new(augmented: bool, max_history: usize, priority: u8) -> MemoizationPolicy {
        MemoizationPolicy {
            augmented,
            max_history: max_history.max(1),
            priority,
            lookup: BTreeMap::new(),
        }
    }

    /// Memorises every (state window → action) of the stories (rules are RulePolicy's).
    pub fn train(&mut self, domain: &Domain, trackers: &[TrainingTracker]) {
        let mut ambiguous = BTreeSet::new();
        for t in trackers.iter().filter(|t| !t.is_rule) {
            let (pairs, _, _) = states_with_actions(domain, &t.events);
            let states: Vec<_> = pairs.iter().map(|(s, _)| s.clone()).collect();
            for (i, (_, action)) in pairs.iter().enumerate() {
                let from = (i + 1).saturating_sub(self.max_history);
                let key = state_key(&states[from..=i]);
                if ambiguous.contains(&key) {
                    continue;
                }
                match self.lookup.get(&key) {
                    Some(a) if a != action => {
                        self.lookup.remove(&key);
                        ambiguous.insert(key);
                    }
                    Some(_) => {}
                    None => {
                        self.lookup.insert(key, action.clone());
                    }
                }
            }
        }
    }

    pub(crate) fn recall(&self, states: &[super::State]) -> Option<&String> {
        let from = states.len().saturating_sub(self.max_history);
        let window = &states[from..];
        if let Some(a) = self.lookup.get(&state_key(window)) {
            return Some(a);
        }
        if self.augmented {
            for start in 1..window.len() {
                if window[start].prev_action.as_deref() != Some(ACTION_LISTEN) {
                    continue;
                }
                if let Some(a) = self.lookup.get(&state_key(&window[start..])) {
                    return Some(a);
                }
            }
        }
        None
    }

    pub fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        self.recall(ctx.states).map(|a| PolicyOutput {
            action: a.clone(),
            confidence: 1.0,
        })
    }
}
