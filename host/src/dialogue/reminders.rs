//! Reminders (`reminder` / `cancel_reminder` events): scheduled in-process, fired as external
//! intents, cancelled by `cancel_reminder`, dropped when the user spoke after a reminder with
//! `kill_on_user_msg`, or when a restart removed it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::task::AbortHandle;

use crate::engine::{Event, EventKind, TrackerState};
use crate::http::AppState;

/// (conversation id, reminder name) → (intent, entities, the scheduled task).
type Jobs = HashMap<(String, String), (String, Value, AbortHandle)>;

#[derive(Default)]
pub struct Scheduler {
    jobs: Mutex<Jobs>,
}

/// Seconds from now until an ISO-8601 date (with or without an offset; without is UTC).
fn seconds_until(date_time: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(date_time)
        .map(|d| d.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(date_time, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|d| d.and_utc().timestamp_millis())
        })
        .ok()?;
    Some((at as f64 / 1000.0) - crate::engine::event::now())
}

impl Scheduler {
    /// Applies the side effects of new events of `sender_id`.
    pub fn handle(&self, state: &Weak<AppState>, sender_id: &str, events: &[Event]) {
        for e in events {
            match &e.kind {
                EventKind::Reminder {
                    intent,
                    entities,
                    date_time,
                    name,
                    ..
                } => {
                    let Some(delay) = seconds_until(date_time) else {
                        tracing::error!(conversation = sender_id, reminder = %name, "reminder has an invalid date_time {date_time:?}; not scheduled");
                        continue;
                    };
                    let key = (sender_id.to_string(), name.clone());
                    let (weak, sender, name_c, intent_c, entities_c) = (
                        state.clone(),
                        sender_id.to_string(),
                        name.clone(),
                        intent.clone(),
                        entities.clone(),
                    );
                    let task = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs_f64(delay.max(0.0))).await;
                        if let Some(state) = weak.upgrade() {
                            fire(&state, &sender, &name_c, &intent_c, entities_c).await;
                            state
                                .reminders
                                .jobs
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&(sender.clone(), name_c.clone()));
                        }
                    });
                    // A reminder with the same name replaces the previous one (as in Rasa).
                    if let Some((_, _, old)) = self
                        .jobs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, (intent.clone(), entities.clone(), task.abort_handle()))
                    {
                        old.abort();
                    }
                }
                EventKind::CancelReminder {
                    name,
                    intent,
                    entities,
                } => {
                    let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                    jobs.retain(|(sender, job_name), (job_intent, job_entities, handle)| {
                        let matches = sender == sender_id
                            && name.as_ref().is_none_or(|n| n == job_name)
                            && intent.as_ref().is_none_or(|i| i == job_intent)
                            && (entities.is_null() || entities == job_entities);
                        if matches {
                            handle.abort();
                        }
                        !matches
                    });
                }
                _ => {}
            }
        }
    }

    pub fn scheduled(&self, sender_id: &str) -> Vec<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(s, _)| s == sender_id)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

async fn fire(state: &Arc<AppState>, sender_id: &str, name: &str, intent: &str, entities: Value) {
    let Some(agent) = state.agent() else { return };
    let log = match state.conversations.read_with_texts(sender_id).await {
        Ok(Some(l)) => l,
        _ => return,
    };
    let events = match log.events(sender_id) {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(
                conversation = sender_id,
                reminder = name,
                "reminder failed: {e}"
            );
            return;
        }
    };
    // Dropped when it is no longer applied (a restart) or the user spoke after it.
    let Some(pos) = events
        .iter()
        .rposition(|e| matches!(&e.kind, EventKind::Reminder { name: n, .. } if n == name))
    else {
        return;
    };
    let kill = matches!(
        &events[pos].kind,
        EventKind::Reminder {
            kill_on_user_msg: true,
            ..
        }
    );
    let applied = TrackerState::compute(&agent.domain, &events).applied;
    if !applied.contains(&pos) {
        tracing::info!(
            conversation = sender_id,
            reminder = name,
            "reminder dropped: the conversation restarted"
        );
        return;
    }
    if kill
        && events[pos..]
            .iter()
            .any(|e| matches!(e.kind, EventKind::User { .. }))
    {
        tracing::info!(
            conversation = sender_id,
            reminder = name,
            "reminder dropped: the user spoke since"
        );
        return;
    }
    let entities: Vec<Value> = entities.as_array().cloned().unwrap_or_default();
    match state
        .processor
        .trigger_intent(state, agent, sender_id, intent, entities)
        .await
    {
        Ok(out) => {
            if let Some(cb) = &state.channels.callback {
                if let Err(e) = cb.send(&out.messages).await {
                    tracing::error!(
                        conversation = sender_id,
                        "reminder messages not delivered: {e}"
                    );
                }
            }
        }
        Err(e) => tracing::error!(
            conversation = sender_id,
            reminder = name,
            "reminder failed: {}",
            e.message
        ),
    }
}
