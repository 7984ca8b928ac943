//! The embedded NLU: turns a user message into Rasa's parse data (`text`, `intent`,
//! `entities`, `intent_ranking`) without Python or a remote server.
//!
//! `colloquy train` fits an [`NluModel`] on the project's NLU data and stores it in the model
//! archive; at run time a message goes through [`parse_message`]: the `/intent{…}` shortcut
//! ([`regex_shortcut`]) first, then the model.
//!
//! The model is four small parts, each in its own file:
//! - [`tokens`]: tokenisation (byte spans; entity spans are reported in characters, as Rasa does);
//! - [`patterns`]: regex features and lookup tables from the data;
//! - [`intent`]: word + character n-gram features into a softmax regression (calibrated
//!   confidences, deterministic training);
//! - [`entities`]: a BILOU sequence tagger (averaged structured perceptron, Viterbi), with
//!   synonyms mapped to their canonical value afterwards (Rasa's `EntitySynonymMapper`);
//!
//! and Rasa's `FallbackClassifier` rule on top ([`NluConfig`]). [`quality`] measures it by
//! cross-validation.

pub mod entities;
mod feature_index;
pub mod intent;
pub mod patterns;
pub mod quality;
pub mod regex_shortcut;
pub mod tokens;

use feature_index::FeatureIndex;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::engine::event::{IntentRanking, RankedIntent};
use crate::training::nlu::NluData;
use entities::{EntityLabel, EntityTagger, TaggedSentence};
use intent::{IntentClassifier, IntentParams};
use patterns::Patterns;
use tokens::{char_offsets, tokenize, Token};

pub use quality::{cross_validate, Report};
pub use regex_shortcut::parse_shortcut;

/// `extractor` of the entities the embedded tagger finds. Rasa's `CRFEntityExtractor` is the
/// component closest to it (a linear-chain model over hand-made token features).
pub const ENTITY_EXTRACTOR: &str = "CRFEntityExtractor";
/// Intent name given by the fallback rule.
pub const FALLBACK_INTENT: &str = "nlu_fallback";
/// Length of `intent_ranking` (DIET's `ranking_length` default; not renormalised).
pub const RANKING_LENGTH: usize = 10;
/// Perceptron epochs and the seed of its example order.
const ENTITY_EPOCHS: usize = 12;
const ENTITY_SEED: u64 = 0x00c0_11e9;

/// The pipeline settings the NLU honours: Rasa's `FallbackClassifier` (`threshold`,
/// `ambiguity_threshold`). `None` means the classifier is not in the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NluConfig {
    #[serde(default)]
    pub fallback_threshold: Option<f64>,
    #[serde(default)]
    pub ambiguity_threshold: Option<f64>,
}

/// A trained NLU model; serialisable into the model archive.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NluModel {
    pub config: NluConfig,
    intents: IntentClassifier,
    #[serde(default)]
    entities: Option<EntityTagger>,
    #[serde(default)]
    patterns: Patterns,
    /// Lowercased surface form → canonical value.
    #[serde(default)]
    synonyms: BTreeMap<String, String>,
    /// The intent labels as shared names, made once: every ranking refers to them.
    #[serde(skip)]
    label_names: OnceLock<Vec<Arc<str>>>,
}

impl NluModel {
    /// Trains on the NLU data. Deterministic: the same data and config give the same model.
    pub fn train(data: &NluData, config: &NluConfig) -> NluModel {
        Self::train_with(data, config, IntentParams::default())
    }

    pub(crate) fn train_with(data: &NluData, config: &NluConfig, params: IntentParams) -> NluModel {
        let patterns = Patterns::from_data(data);
        let prepared: Vec<(Vec<Token>, Vec<Vec<String>>)> = data
            .examples
            .iter()
            .map(|e| {
                let toks = tokenize(&e.text);
                let pf = patterns.token_features(&e.text, &toks);
                (toks, pf)
            })
            .collect();
        let intent_examples: Vec<(Vec<String>, String)> = data
            .examples
            .iter()
            .zip(&prepared)
            .filter(|(e, _)| !e.intent.is_empty())
            .map(|(e, (toks, pf))| (intent::feature_names(toks, pf), e.intent.clone()))
            .collect();
        let intents = IntentClassifier::train(&intent_examples, params);

        let label_of = |e: &crate::training::nlu::NluEntity| EntityLabel {
            entity: e.entity.clone(),
            role: e.role.clone(),
            group: e.group.clone(),
        };
        let labels: Vec<EntityLabel> = data
            .examples
            .iter()
            .flat_map(|e| e.entities.iter().map(label_of))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let entities = (!labels.is_empty()).then(|| {
            let sentences: Vec<TaggedSentence> = data
                .examples
                .iter()
                .zip(&prepared)
                .map(|(e, (toks, pf))| {
                    let spans: Vec<(usize, usize, usize)> = e
                        .entities
                        .iter()
                        .filter_map(|en| {
                            labels
                                .binary_search(&label_of(en))
                                .ok()
                                .map(|l| (en.start, en.end, l))
                        })
                        .collect();
                    TaggedSentence {
                        features: entities::token_features(toks, pf),
                        tags: entities::gold_tags(toks, &spans),
                    }
                })
                .collect();
            EntityTagger::train(labels.clone(), &sentences, ENTITY_EPOCHS, ENTITY_SEED)
        });

        let mut synonyms = BTreeMap::new();
        for s in &data.synonyms {
            for ex in &s.examples {
                if ex != &s.value {
                    synonyms.insert(ex.to_lowercase(), s.value.clone());
                }
            }
        }
        NluModel {
            config: *config,
            intents,
            entities,
            patterns,
            synonyms,
            label_names: OnceLock::new(),
        }
    }

    /// The intents the model can predict.
    pub fn intents(&self) -> &[String] {
        &self.intents.labels
    }

    /// Rasa's parse data for a message: `text`, `intent {name, confidence}`, `entities`,
    /// `text_tokens` (character spans) and `intent_ranking` (at most 10, best first). Empty
    /// (or blank) text gives the intent `null` with confidence 0, as Rasa does; the fallback
    /// rule then applies as to any other message.
    pub fn parse(&self, text: &str) -> Value {
        let (mut parse, ranking) = self.parse_split(text);
        // After `text`, where Rasa has it.
        parse.shift_insert(1, "intent".into(), ranking.intent_value());
        parse.insert("intent_ranking".into(), ranking.to_value());
        Value::Object(parse)
    }

    /// [`Self::parse`] with the ranking kept typed (what a `user` event holds): the parse
    /// data without `intent` and `intent_ranking`, and the ranking (whose first entry is the
    /// intent).
    pub fn parse_split(&self, text: &str) -> (Map<String, Value>, IntentRanking) {
        let toks = tokenize(text);
        let pf = self.patterns.token_features(text, &toks);
        let mut ranking = self.classify(text, &toks, &pf);
        let entities = self.extract(text, &toks, &pf);
        let bounds: Vec<usize> = toks.iter().flat_map(|t| [t.start, t.end]).collect();
        let chars = char_offsets(text, &bounds);
        let text_tokens: Vec<Value> = chars.chunks(2).map(|c| json!([c[0], c[1]])).collect();
        self.apply_fallback(&mut ranking);
        // Built by moving the parts in: `json!` would serialise each of them into a copy.
        let mut parse = Map::with_capacity(5);
        parse.insert("text".into(), Value::String(text.to_string()));
        parse.insert("entities".into(), Value::Array(entities));
        parse.insert("text_tokens".into(), Value::Array(text_tokens));
        (parse, ranking)
    }

    /// The intent ranking, best first; empty for a blank text or a model without intents.
    fn classify(&self, text: &str, toks: &[Token], pf: &[Vec<String>]) -> IntentRanking {
        if text.trim().is_empty() || self.intents.labels.is_empty() || !self.intents.is_consistent()
        {
            return IntentRanking::default();
        }
        let names = self.label_names.get_or_init(|| {
            self.intents
                .labels
                .iter()
                .map(|l| Arc::from(l.as_str()))
                .collect()
        });
        let probs = self.intents.predict_message(toks, pf);
        let mut ranked: Vec<RankedIntent> = names
            .iter()
            .zip(probs)
            .map(|(name, confidence)| RankedIntent {
                name: name.clone(),
                confidence,
            })
            .collect();
        // Best first; equal confidences in name order, so the output is deterministic.
        ranked.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then_with(|| a.name.cmp(&b.name))
        });
        ranked.truncate(RANKING_LENGTH);
        IntentRanking(ranked)
    }

    fn extract(&self, text: &str, toks: &[Token], pf: &[Vec<String>]) -> Vec<Value> {
        let Some(tagger) = self.entities.as_ref().filter(|t| t.is_consistent()) else {
            return Vec::new();
        };
        let spans = tagger.predict_tokens(toks, pf);
        let starts = char_offsets(
            text,
            &spans
                .iter()
                .map(|s| toks[s.first].start)
                .collect::<Vec<_>>(),
        );
        spans
            .into_iter()
            .zip(starts)
            .map(|(s, start)| {
                let (sb, eb) = (toks[s.first].start, toks[s.last].end);
                let label = &tagger.labels[s.label];
                let surface = &text[sb..eb];
                let mut e = json!({
                    "entity": label.entity,
                    "start": start,
                    "end": start + surface.chars().count(),
                    "confidence_entity": s.confidence,
                    "value": surface,
                    "extractor": ENTITY_EXTRACTOR,
                });
                let o = e.as_object_mut().expect("object");
                if let Some(r) = &label.role {
                    o.insert("role".into(), json!(r));
                    o.insert("confidence_role".into(), json!(s.confidence));
                }
                if let Some(g) = &label.group {
                    o.insert("group".into(), json!(g));
                    o.insert("confidence_group".into(), json!(s.confidence));
                }
                if let Some(canonical) = self.synonyms.get(&surface.to_lowercase()) {
                    o.insert("value".into(), json!(canonical));
                    o.insert("processors".into(), json!(["EntitySynonymMapper"]));
                }
                e
            })
            .collect()
    }

    /// Rasa's `FallbackClassifier`: when the top confidence is below `threshold`, or the top
    /// two are closer than `ambiguity_threshold`, the intent becomes `nlu_fallback` with
    /// confidence = threshold, inserted at the head of the (otherwise kept) ranking. A blank
    /// text (no ranking) counts as confidence 0.
    fn apply_fallback(&self, ranking: &mut IntentRanking) {
        let Some(threshold) = self.config.fallback_threshold else {
            return;
        };
        let c = |i: usize| ranking.0.get(i).map_or(0.0, |r| r.confidence);
        let ambiguous = match self.config.ambiguity_threshold {
            Some(amb) if ranking.0.len() >= 2 => c(0) - c(1) < amb,
            _ => false,
        };
        if c(0) >= threshold && !ambiguous {
            return;
        }
        ranking.0.insert(
            0,
            RankedIntent {
                name: Arc::from(FALLBACK_INTENT),
                confidence: threshold,
            },
        );
    }
}

/// Parses a message as Rasa 3 does without a remote NLU: a valid `/intent{…}` shortcut wins;
/// otherwise the embedded model; without a model, an empty intent. `known_intents` and
/// `known_entities` are the domain's (`None` when there is no domain).
pub fn parse_message(
    model: Option<&NluModel>,
    text: &str,
    known_intents: Option<&[String]>,
    known_entities: Option<&[String]>,
) -> Value {
    if let Some(v) = parse_shortcut(text, known_intents, known_entities) {
        return v;
    }
    match model {
        Some(m) => m.parse(text),
        None => {
            json!({"text": text, "intent": {"name": null, "confidence": 0.0}, "entities": [], "intent_ranking": []})
        }
    }
}
