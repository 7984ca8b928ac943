//! Measuring the embedded NLU: stratified k-fold cross-validation with Rasa's report layout
//! (`rasa test nlu --cross-validation`): `intent_evaluation.report` is sklearn's
//! `classification_report(output_dict=True)` (plus Rasa's `confused_with`), and entities are
//! scored per token with `no_entity` excluded, as Rasa does. `span_f1` (exact entity spans)
//! is reported as well.
//!
//! The figures in `docs/nlu-quality.md` come from the ignored test at the bottom:
//! `cargo test --release -p colloquy --lib nlu::quality -- --ignored --nocapture`.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::intent::IntentParams;
use super::tokens::{char_offsets, tokenize};
use super::{NluConfig, NluModel};
use crate::training::nlu::NluData;

const NO_ENTITY: &str = "no_entity";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub folds: usize,
    pub seed: u64,
    pub examples: usize,
    pub intent_evaluation: IntentEvaluation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_evaluation: Option<EntityEvaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntentEvaluation {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Weighted-average F1 (what Rasa prints as `f1_score`).
    pub f1_score: f64,
    /// Weighted-average precision (Rasa's `precision`).
    pub precision: f64,
    /// sklearn's classification report dict, with Rasa's `confused_with`.
    pub report: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntityEvaluation {
    /// Token-level weighted-average F1 over entity labels (`no_entity` excluded), Rasa's figure.
    pub f1_score: f64,
    pub precision: f64,
    pub accuracy: f64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    /// Exact-span F1: an entity counts when type, start and end all match.
    pub span_f1: f64,
    pub report: Value,
}

/// Stratified folds: each intent's examples are shuffled (seeded) and dealt round-robin, so
/// every fold gets its share of every intent.
pub fn folds_of(data: &NluData, folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(2);
    let mut by_intent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in data.examples.iter().enumerate() {
        by_intent.entry(e.intent.as_str()).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0; data.examples.len()];
    let mut next = 0;
    for idx in by_intent.values_mut() {
        idx.shuffle(&mut rng);
        for &i in idx.iter() {
            fold_of[i] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Token labels (entity type or `no_entity`) of a text given entity character spans.
fn token_labels(text: &str, ents: &[(usize, usize, String)]) -> Vec<String> {
    let toks = tokenize(text);
    let bounds: Vec<usize> = toks.iter().flat_map(|t| [t.start, t.end]).collect();
    let chars = char_offsets(text, &bounds);
    chars
        .chunks(2)
        .map(|c| {
            ents.iter()
                .find(|(s, e, _)| c[0] < *e && c[1] > *s)
                .map_or(NO_ENTITY.to_string(), |(_, _, l)| l.clone())
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: f64,
    fp: f64,
    fn_: f64,
}

impl Counts {
    fn prf(&self) -> (f64, f64, f64) {
        let p = if self.tp + self.fp > 0.0 {
            self.tp / (self.tp + self.fp)
        } else {
            0.0
        };
        let r = if self.tp + self.fn_ > 0.0 {
            self.tp / (self.tp + self.fn_)
        } else {
            0.0
        };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        (p, r, f)
    }
}

/// sklearn's `classification_report(output_dict=True)` over `labels`; `with_accuracy` adds the
/// `accuracy` key (all labels), otherwise `micro avg` (a subset of labels, as Rasa does for
/// entities). Returns (report, macro F1, weighted F1, weighted precision, micro F1).
fn classification_report(
    pairs: &[(String, String)],
    labels: &[String],
    with_accuracy: bool,
) -> (Value, f64, f64, f64, f64) {
    let mut counts: BTreeMap<&str, Counts> = labels
        .iter()
        .map(|l| (l.as_str(), Counts::default()))
        .collect();
    let mut confused: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (gold, pred) in pairs {
        if gold == pred {
            if let Some(c) = counts.get_mut(gold.as_str()) {
                c.tp += 1.0;
            }
        } else {
            if let Some(c) = counts.get_mut(gold.as_str()) {
                c.fn_ += 1.0;
                *confused.entry(gold).or_default().entry(pred).or_default() += 1;
            }
            if let Some(c) = counts.get_mut(pred.as_str()) {
                c.fp += 1.0;
            }
        }
    }
    let mut report = Map::new();
    let (mut macro_, mut weighted, mut support_total) = ([0.0; 3], [0.0; 3], 0.0);
    let mut micro = Counts::default();
    for (l, c) in &counts {
        let (p, r, f) = c.prf();
        let support = c.tp + c.fn_;
        let mut row =
            json!({"precision": p, "recall": r, "f1-score": f, "support": support as u64});
        if with_accuracy {
            let mut top: Vec<(&str, usize)> = confused
                .get(l)
                .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            top.truncate(2);
            row["confused_with"] = Value::Object(
                top.into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect(),
            );
        }
        report.insert(l.to_string(), row);
        for (i, x) in [p, r, f].into_iter().enumerate() {
            macro_[i] += x;
            weighted[i] += x * support;
        }
        support_total += support;
        micro.tp += c.tp;
        micro.fp += c.fp;
        micro.fn_ += c.fn_;
    }
    let n = counts.len().max(1) as f64;
    let w = |i: usize| {
        if support_total > 0.0 {
            weighted[i] / support_total
        } else {
            0.0
        }
    };
    let (mp, mr, mf) = micro.prf();
    if with_accuracy {
        report.insert("accuracy".into(), json!(mr));
    } else {
        report.insert(
            "micro avg".into(),
            json!({"precision": mp, "recall": mr, "f1-score": mf, "support": support_total as u64}),
        );
    }
    report.insert(
        "macro avg".into(),
        json!({"precision": macro_[0] / n, "recall": macro_[1] / n, "f1-score": macro_[2] / n, "support": support_total as u64}),
    );
    report.insert("weighted avg".into(), json!({"precision": w(0), "recall": w(1), "f1-score": w(2), "support": support_total as u64}));
    (Value::Object(report), macro_[2] / n, w(2), w(0), mf)
}

/// k-fold cross-validation (stratified by intent, seeded): trains on k−1 folds, parses the
/// held-out one, and pools the predictions of all folds into one report.
pub fn cross_validate(data: &NluData, folds: usize, seed: u64) -> Report {
    cross_validate_with(data, folds, seed, IntentParams::default())
}

pub(crate) fn cross_validate_with(
    data: &NluData,
    folds: usize,
    seed: u64,
    params: IntentParams,
) -> Report {
    let fold_of = folds_of(data, folds, seed);
    let k = folds.max(2);
    let mut intent_pairs = Vec::new();
    let mut token_pairs = Vec::new();
    let (mut span_tp, mut span_gold, mut span_pred) = (0.0, 0.0, 0.0);
    let has_entities = data.examples.iter().any(|e| !e.entities.is_empty());
    for f in 0..k {
        let train = NluData {
            examples: data
                .examples
                .iter()
                .zip(&fold_of)
                .filter(|(_, &g)| g != f)
                .map(|(e, _)| e.clone())
                .collect(),
            ..data.clone()
        };
        if train.examples.is_empty() {
            continue;
        }
        let model = NluModel::train_with(&train, &NluConfig::default(), params);
        for (e, _) in data.examples.iter().zip(&fold_of).filter(|(_, &g)| g == f) {
            let out = model.parse(&e.text);
            let pred = out
                .pointer("/intent/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            intent_pairs.push((e.intent.clone(), pred));
            if has_entities {
                let gold_chars: Vec<usize> = char_offsets(
                    &e.text,
                    &e.entities
                        .iter()
                        .flat_map(|x| [x.start, x.end])
                        .collect::<Vec<_>>(),
                );
                let mut gold: Vec<(usize, usize, String)> = e
                    .entities
                    .iter()
                    .zip(gold_chars.chunks(2))
                    .map(|(x, c)| (c[0], c[1], x.entity.clone()))
                    .collect();
                gold.sort();
                let predicted: BTreeSet<(usize, usize, String)> = out
                    .get("entities")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|x| {
                        let n = |k: &str| x.get(k).and_then(Value::as_u64).map(|v| v as usize);
                        Some((
                            n("start")?,
                            n("end")?,
                            x.get("entity")?.as_str()?.to_string(),
                        ))
                    })
                    .collect();
                let pred_list: Vec<_> = predicted.iter().cloned().collect();
                span_gold += gold.len() as f64;
                span_pred += pred_list.len() as f64;
                span_tp += gold.iter().filter(|g| predicted.contains(*g)).count() as f64;
                let gl = token_labels(&e.text, &gold);
                let pl = token_labels(&e.text, &pred_list);
                token_pairs.extend(gl.into_iter().zip(pl));
            }
        }
    }
    let labels: Vec<String> = data.intents().into_iter().map(str::to_string).collect();
    let (report, macro_f1, f1_score, precision, _) =
        classification_report(&intent_pairs, &labels, true);
    let accuracy = if intent_pairs.is_empty() {
        0.0
    } else {
        intent_pairs.iter().filter(|(g, p)| g == p).count() as f64 / intent_pairs.len() as f64
    };
    let entity_evaluation = has_entities.then(|| {
        let labels: Vec<String> = data
            .examples
            .iter()
            .flat_map(|e| e.entities.iter().map(|x| x.entity.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (report, macro_f1, f1_score, precision, micro_f1) =
            classification_report(&token_pairs, &labels, false);
        let accuracy = if token_pairs.is_empty() {
            0.0
        } else {
            token_pairs.iter().filter(|(g, p)| g == p).count() as f64 / token_pairs.len() as f64
        };
        let sp = if span_pred > 0.0 {
            span_tp / span_pred
        } else {
            0.0
        };
        let sr = if span_gold > 0.0 {
            span_tp / span_gold
        } else {
            0.0
        };
        let span_f1 = if sp + sr > 0.0 {
            2.0 * sp * sr / (sp + sr)
        } else {
            0.0
        };
        EntityEvaluation {
            f1_score,
            precision,
            accuracy,
            micro_f1,
            macro_f1,
            span_f1,
            report,
        }
    });
    Report {
        folds: k,
        seed,
        examples: data.examples.len(),
        intent_evaluation: IntentEvaluation {
            accuracy,
            macro_f1,
            f1_score,
            precision,
            report,
        },
        entity_evaluation,
    }
}

#[cfg(test)]
pub(crate) mod bench {
    use std::path::Path;

    use crate::domain::Source;
    use crate::training::nlu::NluData;

    pub const EXAMPLES: &str = "/work/shared/rasa/rasa-3.6.4/examples";
    pub const BOTS: &[&str] = &["moodbot", "formbot", "concertbot", "reminderbot"];

    /// The NLU data of a shared Rasa example project (all YAML files under `data/`).
    pub fn load(bot: &str) -> NluData {
        let dir = Path::new(EXAMPLES).join(bot).join("data");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("example data")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        let mut nlu = NluData::default();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        {
            let src = Source::read(f).expect("readable");
            crate::training::stories_yaml::parse(&src, &mut Vec::new(), &mut nlu, &mut Vec::new())
                .expect("valid data");
        }
        nlu
    }
}

#[cfg(test)]
mod table {
    use std::time::Instant;

    use super::bench::{load, BOTS};
    use super::cross_validate;
    use crate::nlu::{NluConfig, NluModel};

    /// Hyper-parameter search for the intent classifier (same folds and seed as the table).
    #[test]
    #[ignore = "tuning; run in release with --ignored --nocapture"]
    fn tune_intent_classifier() {
        use crate::nlu::intent::IntentParams;
        let sets: Vec<_> = BOTS.iter().map(|b| (*b, load(b))).collect();
        for l2 in [1e-5f32, 1e-4, 1e-3, 3e-3] {
            for (epochs, lr) in [(100, 0.1f32), (250, 0.05)] {
                for char_weight in [0.5f32, 1.0, 2.0] {
                    for balanced in [true, false] {
                        let p = IntentParams {
                            epochs,
                            learning_rate: lr,
                            l2,
                            char_weight,
                            balanced,
                        };
                        let mut line = format!(
                            "l2={l2:e} epochs={epochs} lr={lr} cw={char_weight} bal={balanced}:"
                        );
                        let mut sum = 0.0;
                        for (b, d) in &sets {
                            let r = super::cross_validate_with(d, 5, 42, p);
                            let ie = &r.intent_evaluation;
                            sum += ie.macro_f1;
                            line.push_str(&format!(" {b} {:.3}/{:.3}", ie.accuracy, ie.macro_f1));
                        }
                        println!("{line} mean-macroF1 {:.3}", sum / sets.len() as f64);
                    }
                }
            }
        }
    }

    /// Prints the table of `docs/nlu-quality.md`:
    /// `cargo test --release -p colloquy --lib nlu::quality -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; run in release with --ignored --nocapture"]
    fn print_quality_table() {
        println!("| data | examples | intents | intent accuracy | intent macro-F1 | intent weighted F1 | entity F1 (token, weighted) | entity span F1 | training time (all data) |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for bot in BOTS {
            let data = load(bot);
            let t = Instant::now();
            let model = NluModel::train(&data, &NluConfig::default());
            let train_ms = t.elapsed().as_secs_f64() * 1000.0;
            let r = cross_validate(&data, 5, 42);
            let ie = &r.intent_evaluation;
            let (ef, sf) = r
                .entity_evaluation
                .as_ref()
                .map_or(("–".to_string(), "–".to_string()), |e| {
                    (format!("{:.3}", e.f1_score), format!("{:.3}", e.span_f1))
                });
            println!(
                "| {bot} | {} | {} | {:.3} | {:.3} | {:.3} | {ef} | {sf} | {train_ms:.0} ms |",
                r.examples,
                model.intents().len(),
                ie.accuracy,
                ie.macro_f1,
                ie.f1_score
            );
            if std::env::var_os("NLU_REPORT").is_some() {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            }
        }
    }
}
