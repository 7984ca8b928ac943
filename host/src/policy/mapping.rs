//! rasa_core 0.x / 1.x policies: MappingPolicy (`triggers:`), FormPolicy and FallbackPolicy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::memoization::MemoizationPolicy;
use super::{states_with_actions, PolicyOutput, PredictContext, TrainingTracker, ACTION_LISTEN};
use crate::domain::Domain;

/// Intents mapped to an action (`triggers:` in the domain, plus `restart`/`back`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingPolicy {
    pub priority: u8,
    pub triggers: BTreeMap<String, String>,
}

impl MappingPolicy {
    pub fn new(domain: &Domain, priority: u8) -> MappingPolicy {
        let mut triggers: BTreeMap<String, String> =
            [("restart", "action_restart"), ("back", "action_back")]
                .iter()
                .map(|(i, a)| (i.to_string(), a.to_string()))
                .collect();
        for i in &domain.intents {
            if let Some(a) = &i.triggers {
                triggers.insert(i.name.clone(), a.clone());
            }
        }
        MappingPolicy { priority, triggers }
    }

    pub fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        let cur = ctx.current();
        let action = self.triggers.get(cur.intent.as_deref()?)?;
        let prev = cur.prev_action.as_deref();
        if prev == Some(ACTION_LISTEN) {
            Some(PolicyOutput {
                action: action.clone(),
                confidence: 1.0,
            })
        } else if prev == Some(action.as_str()) {
            Some(PolicyOutput {
                action: ACTION_LISTEN.into(),
                confidence: 1.0,
            })
        } else {
            None
        }
    }
}

/// 0.x FormPolicy: runs the active form after each user message, listens after it ran, and
/// steps aside where the stories show an unhappy path (memorised with a history of 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormPolicy {
    pub priority: u8,
    pub unhappy: MemoizationPolicy,
}

impl FormPolicy {
    pub fn new(priority: u8) -> FormPolicy {
        FormPolicy {
            priority,
            unhappy: MemoizationPolicy::new(false, 2, priority),
        }
    }

    pub fn train(&mut self, domain: &Domain, trackers: &[TrainingTracker]) {
        for t in trackers.iter().filter(|t| !t.is_rule) {
            let (pairs, _, _) = states_with_actions(domain, &t.events);
            let states: Vec<_> = pairs.iter().map(|(s, _)| s.clone()).collect();
            for (i, (s, action)) in pairs.iter().enumerate() {
                let in_form =
                    s.active_loop.is_some() && s.prev_action.as_deref() == Some(ACTION_LISTEN);
                if in_form && s.active_loop.as_ref() != Some(action) {
                    let from = (i + 1).saturating_sub(2);
                    self.unhappy
                        .lookup
                        .insert(super::state_key(&states[from..=i]), action.clone());
                }
            }
        }
    }

    pub fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        let form = ctx.tracker.active_loop.as_ref()?;
        let cur = ctx.current();
        if cur.prev_action.as_ref() == Some(form) {
            return Some(PolicyOutput {
                action: ACTION_LISTEN.into(),
                confidence: 1.0,
            });
        }
        if ctx.tracker.loop_rejected || self.unhappy.recall(ctx.states).is_some() {
            return None;
        }
        if cur.prev_action.as_deref() == Some(ACTION_LISTEN) {
            return Some(PolicyOutput {
                action: form.clone(),
                confidence: 1.0,
            });
        }
        None
    }
}

/// 1.x FallbackPolicy: the fallback action when nothing is confident enough, or right away
/// for a message NLU could not classify (`nlu_fallback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackPolicy {
    pub priority: u8,
    pub nlu_threshold: f64,
    pub core_threshold: f64,
    pub fallback_action_name: String,
}

impl FallbackPolicy {
    pub fn predict(&self, ctx: &PredictContext) -> Option<PolicyOutput> {
        let cur = ctx.current();
        if cur.prev_action.as_ref() == Some(&self.fallback_action_name) {
            return Some(PolicyOutput {
                action: ACTION_LISTEN.into(),
                confidence: 1.0,
            });
        }
        if cur.intent.as_deref() == Some("nlu_fallback")
            && cur.prev_action.as_deref() == Some(ACTION_LISTEN)
        {
            return Some(PolicyOutput {
                action: self.fallback_action_name.clone(),
                confidence: 1.0,
            });
        }
        Some(PolicyOutput {
            action: self.fallback_action_name.clone(),
            confidence: self.core_threshold,
        })
    }
}
