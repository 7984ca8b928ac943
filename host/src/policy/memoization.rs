//! MemoizationPolicy and AugmentedMemoizationPolicy: exact recall of story states.
//!
//! Like Rasa, the key is the last `max_history` dialogue states before an action; a key seen
//! with two different actions is ambiguous and dropped. The augmented variant, on a miss,
//! forgets the oldest turns (cutting at `action_listen` boundaries) and retries, so a story
//! that starts mid-conversation still matches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

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
    /// `lookup` keyed by the states themselves, for recall (see [`StateIndex`]).
    #[serde(skip)]
    index: StateIndex,
}

/// `lookup` with its keys parsed back into states, built at the first recall: looking a
/// window of states up then hashes the states, where the JSON keys needed every window (and
/// every shorter one, for the augmented policy) serialised per prediction. `None` if a key
/// does not parse (then recall uses the JSON keys). Derived from `lookup`, so it takes no part
/// in comparisons.
#[derive(Debug, Clone, Default)]
struct StateIndex(OnceLock<Option<StatesToAction>>);

/// Keyed like the host's other hot maps (`KeyedHasher`): SipHash over a window of states was
/// ~2 % of a P2 turn.
type StatesToAction = HashMap<Vec<super::State>, String, colloquy_plugin_api::sdk::KeyedHasher>;

impl PartialEq for StateIndex {
    fn eq(&self, _: &StateIndex) -> bool {
        true
    }
}

impl MemoizationPolicy {
    pub fn new(augmented: bool, max_history: usize, priority: u8) -> MemoizationPolicy {
        MemoizationPolicy {
            augmented,
            max_history: max_history.max(1),
            priority,
            lookup: BTreeMap::new(),
            index: StateIndex::default(),
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
        let index = self
            .index
            .0
            .get_or_init(|| {
                self.lookup
                    .iter()
                    .map(|(k, a)| Some((serde_json::from_str(k).ok()?, a.clone())))
                    .collect()
            })
            .as_ref();
        let get = |window: &[super::State]| match index {
            Some(index) => index.get(window),
            None => self.lookup.get(&state_key(window)),
        };
        let from = states.len().saturating_sub(self.max_history);
        let window = &states[from..];
        if let Some(a) = get(window) {
            return Some(a);
        }
        if self.augmented {
            for start in 1..window.len() {
                if window[start].prev_action.as_deref() != Some(ACTION_LISTEN) {
                    continue;
                }
                if let Some(a) = get(&window[start..]) {
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

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;

    fn state(intent: Option<&str>, prev: &str, slot: Option<&str>) -> State {
        State {
            intent: intent.map(str::to_string),
            prev_action: Some(prev.to_string()),
            slots: slot
                .map(|v| [("s".to_string(), v.to_string())].into())
                .unwrap_or_default(),
            ..State::default()
        }
    }

    /// Recall through the states index answers exactly as the JSON keys do: equal windows
    /// hit, windows that differ in any field miss, the augmented policy finds a suffix that
    /// starts after `action_listen`, and a key that does not parse falls back to the JSON keys.
    #[test]
    fn the_states_index_recalls_as_the_json_keys_do() {
        let greet = vec![
            state(None, ACTION_LISTEN, None),
            state(Some("greet"), ACTION_LISTEN, Some("a")),
        ];
        let suffix = vec![state(Some("bye"), ACTION_LISTEN, None)];
        for broken_key in [false, true] {
            let mut p = MemoizationPolicy::new(true, 5, 3);
            p.lookup.insert(state_key(&greet), "utter_greet".into());
            p.lookup.insert(state_key(&suffix), "utter_bye".into());
            if broken_key {
                p.lookup.insert("not json".into(), "x".into());
            }
            assert_eq!(p.recall(&greet).map(String::as_str), Some("utter_greet"));
            let other_slot = vec![
                greet[0].clone(),
                state(Some("greet"), ACTION_LISTEN, Some("b")),
            ];
            assert_eq!(p.recall(&other_slot), None);
            let longer = vec![state(Some("x"), "utter_x", None), suffix[0].clone()];
            assert_eq!(p.recall(&longer).map(String::as_str), Some("utter_bye"));
            assert_eq!(p.index.0.get().unwrap().is_some(), !broken_key);
            let plain = MemoizationPolicy {
                augmented: false,
                ..p.clone()
            };
            assert_eq!(plain.recall(&longer), None);
        }
    }
}
