//! Story and rule blocks as read from files, and their expansion into training trackers
//! (`or` alternatives, checkpoints, the implicit `action_listen`s).

use crate::domain::Domain;
use crate::policy::{StoryEvent, TrainingTracker, ACTION_LISTEN};

use super::DataError;

/// One step of a story: an event, or `or:` alternatives.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Event(StoryEvent, usize),
    Or(Vec<StoryEvent>, usize),
}

/// A story or rule as written (one block between checkpoints).
#[derive(Debug, Clone, PartialEq)]
pub struct StoryBlock {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub is_rule: bool,
    pub start_checkpoints: Vec<String>,
    pub end_checkpoints: Vec<String>,
    pub condition: Vec<(StoryEvent, usize)>,
    pub steps: Vec<Step>,
    pub conversation_start: bool,
    pub wait_for_user_input: bool,
}

impl StoryBlock {
    pub fn new(name: &str, file: &str, line: usize, is_rule: bool) -> StoryBlock {
        StoryBlock {
            name: name.to_string(),
            file: file.to_string(),
            line,
            is_rule,
            start_checkpoints: Vec::new(),
            end_checkpoints: Vec::new(),
            condition: Vec::new(),
            steps: Vec::new(),
            conversation_start: false,
            wait_for_user_input: true,
        }
    }

    /// Every combination of `or` alternatives (capped: Rasa warns about blow-ups too).
    fn variants(&self) -> Vec<Vec<(StoryEvent, usize)>> {
        let mut out: Vec<Vec<(StoryEvent, usize)>> = vec![Vec::new()];
        for s in &self.steps {
            match s {
                Step::Event(e, l) => out.iter_mut().for_each(|v| v.push((e.clone(), *l))),
                Step::Or(alts, l) => {
                    let mut next = Vec::new();
                    for v in &out {
                        for a in alts {
                            let mut n = v.clone();
                            n.push((a.clone(), *l));
                            next.push(n);
                        }
                    }
                    next.truncate(256);
                    out = next;
                }
            }
        }
        out
    }
}

/// Checks that stories only use actions, forms, slots and intents of the domain.
pub fn validate(
    blocks: &[StoryBlock],
    domain: &Domain,
    warnings: &mut Vec<String>,
) -> Result<(), DataError> {
    let at = |b: &StoryBlock, line: usize, message: String| DataError {
        file: b.file.clone(),
        line: Some(line),
        message,
    };
    for b in blocks {
        let kind = if b.is_rule { "rule" } else { "story" };
        let events = b
            .condition
            .iter()
            .map(|(e, l)| (e, *l))
            .chain(b.steps.iter().flat_map(|s| match s {
                Step::Event(e, l) => vec![(e, *l)],
                Step::Or(alts, l) => alts.iter().map(|e| (e, *l)).collect(),
            }));
        for (e, line) in events {
            match e {
                StoryEvent::Action(a) if !domain.has_action(a) => {
                    return Err(at(
                        b,
                        line,
                        format!(
                            "{kind} '{}' uses action `{a}`, which is not in the domain",
                            b.name
                        ),
                    ))
                }
                StoryEvent::Slot { name, .. } if domain.slot(name).is_none() => {
                    return Err(at(
                        b,
                        line,
                        format!(
                            "{kind} '{}' sets slot `{name}`, which is not in the domain",
                            b.name
                        ),
                    ))
                }
                StoryEvent::ActiveLoop(Some(l))
                    if domain.form(l).is_none() && !domain.actions.contains(l) =>
                {
                    return Err(at(
                        b,
                        line,
                        format!(
                            "{kind} '{}' activates loop `{l}`, which is not a form of the domain",
                            b.name
                        ),
                    ))
                }
                StoryEvent::User {
                    intent: Some(i), ..
                } if domain.intent(i).is_none()
                    && !crate::domain::DEFAULT_INTENTS.contains(&i.as_str()) =>
                {
                    warnings.push(format!(
                        "{}:{line}: intent `{i}` in {kind} '{}' is not in the domain",
                        b.file, b.name
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Adds `action_listen` before each user message, and after the last action when the
/// conversation waits for the user.
fn with_listens(events: Vec<(StoryEvent, usize)>, listen_at_end: bool) -> Vec<(StoryEvent, usize)> {
    let mut out: Vec<(StoryEvent, usize)> = Vec::new();
    for (e, l) in events {
        if matches!(e, StoryEvent::User { .. }) {
            let prev_action = out
                .iter()
                .rev()
                .find(|(e, _)| matches!(e, StoryEvent::Action(_) | StoryEvent::User { .. }));
            if !matches!(prev_action, Some((StoryEvent::Action(a), _)) if a == ACTION_LISTEN) {
                out.push((StoryEvent::Action(ACTION_LISTEN.into()), 0));
            }
        }
        out.push((e, l));
    }
    if listen_at_end {
        let last = out
            .iter()
            .rev()
            .find(|(e, _)| matches!(e, StoryEvent::Action(_) | StoryEvent::User { .. }));
        if matches!(last, Some((StoryEvent::Action(a), _)) if a != ACTION_LISTEN) {
            out.push((StoryEvent::Action(ACTION_LISTEN.into()), 0));
        }
    }
    out
}

fn tracker(
    b: &StoryBlock,
    name: String,
    events: Vec<(StoryEvent, usize)>,
    listen_at_end: bool,
) -> TrainingTracker {
    let events = with_listens(events, listen_at_end);
    TrainingTracker {
        name,
        file: b.file.clone(),
        is_rule: b.is_rule,
        condition: b.condition.iter().map(|(e, _)| e.clone()).collect(),
        lines: events.iter().map(|(_, l)| *l).collect(),
        events: events.into_iter().map(|(e, _)| e).collect(),
        conversation_start: b.conversation_start,
        starts_with_snippet: b.is_rule && !b.conversation_start,
    }
}

const MAX_TRACKERS: usize = 5000;
const MAX_DEPTH: usize = 10;

/// Rules become one tracker per variant; stories are stitched through their checkpoints.
pub fn build_trackers(blocks: &[StoryBlock]) -> Vec<TrainingTracker> {
    let mut out = Vec::new();
    for b in blocks.iter().filter(|b| b.is_rule) {
        for v in b.variants() {
            out.push(tracker(b, b.name.clone(), v, b.wait_for_user_input));
        }
    }
    let stories: Vec<&StoryBlock> = blocks.iter().filter(|b| !b.is_rule).collect();
    for root in stories.iter().filter(|b| {
        b.start_checkpoints.is_empty() || b.start_checkpoints.iter().any(|c| c == "STORY_START")
    }) {
        for v in root.variants() {
            extend(root, &stories, root.name.clone(), v, 0, &mut out);
        }
    }
    out
}

fn extend(
    b: &StoryBlock,
    stories: &[&StoryBlock],
    name: String,
    events: Vec<(StoryEvent, usize)>,
    depth: usize,
    out: &mut Vec<TrainingTracker>,
) {
    if out.len() >= MAX_TRACKERS {
        return;
    }
    let next: Vec<&&StoryBlock> = stories
        .iter()
        .filter(|s| {
            s.start_checkpoints
                .iter()
                .any(|c| b.end_checkpoints.contains(c))
        })
        .collect();
    if next.is_empty() || depth >= MAX_DEPTH {
        out.push(tracker(b, name, events, true));
        return;
    }
    for n in next {
        for v in n.variants() {
            let mut ev = events.clone();
            ev.extend(v);
            let nm = if n.name == b.name {
                name.clone()
            } else {
                format!("{name} > {}", n.name)
            };
            extend(n, stories, nm, ev, depth + 1, out);
        }
    }
}
