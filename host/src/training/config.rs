//! `config.yml`: which policies to train (with their parameters) and the pipeline settings
//! the dialogue side needs (the `FallbackClassifier` threshold).

use serde_json::{Map, Value};

use super::{DataError, TrainError};
use crate::domain::parse::{find_line, yaml_to_json};
use crate::domain::{Domain, Source};
use crate::policy::{
    FallbackPolicy, FormPolicy, MappingPolicy, MemoizationPolicy, Policy, PolicyEnsemble,
    RulePolicy, TrainingTracker,
};

/// Rasa policies Colloquy does not implement: skipped with a warning.
const NOT_IMPLEMENTED: &[&str] = &[
    "TEDPolicy",
    "UnexpecTEDIntentPolicy",
    "KerasPolicy",
    "EmbeddingPolicy",
    "SklearnPolicy",
    "TwoStageFallbackPolicy",
];

#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub params: Map<String, Value>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectConfig {
    pub file: String,
    pub assistant_id: Option<String>,
    pub language: Option<String>,
    /// `None`: no `policies:` key (or no config file), so Rasa's defaults apply.
    pub policies: Option<Vec<PolicySpec>>,
    pub fallback_threshold: Option<f64>,
    pub fallback_ambiguity_threshold: Option<f64>,
}

pub fn parse(src: Option<&Source>) -> Result<ProjectConfig, DataError> {
    let Some(src) = src else {
        return Ok(ProjectConfig::default());
    };
    let doc = yaml_to_json(&src.text, &src.name).map_err(DataError::from)?;
    let map = match doc {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Err(DataError::at(
                &src.name,
                1,
                "the config must be a mapping".into(),
            ))
        }
    };
    let mut cfg = ProjectConfig {
        file: src.name.clone(),
        assistant_id: map
            .get("assistant_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        language: map
            .get("language")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..ProjectConfig::default()
    };
    let mut cursor = super::stories_yaml::LineCursor::new(&src.text);
    if let Some(p) = map.get("policies") {
        let mut specs = Vec::new();
        for item in p.as_array().into_iter().flatten() {
            let name = item.get("name").and_then(Value::as_str).ok_or_else(|| {
                DataError::at(
                    &src.name,
                    find_line(&src.text, "policies").unwrap_or(1),
                    format!("a policy needs a `name`: {item}"),
                )
            })?;
            let line = cursor.find(&[name]);
            let params = item.as_object().cloned().unwrap_or_default();
            specs.push(PolicySpec {
                name: name.to_string(),
                params,
                line,
            });
        }
        if !p.is_null() {
            cfg.policies = Some(specs);
        }
    }
    for c in map
        .get("pipeline")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if c.get("name").and_then(Value::as_str) == Some("FallbackClassifier") {
            cfg.fallback_threshold =
                Some(c.get("threshold").and_then(Value::as_f64).unwrap_or(0.3));
            cfg.fallback_ambiguity_threshold = Some(
                c.get("ambiguity_threshold")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.1),
            );
        }
    }
    Ok(cfg)
}

fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.to_string(),
        params: Map::new(),
        line: 0,
    }
}

/// The policies Rasa uses without configuration: 3.x (`rasa init` defaults) or, for a 0.x
/// project, rasa_core's (Memoization + Keras) plus Mapping and Form so its domain works.
pub fn default_policies(legacy: bool, domain: &Domain) -> Vec<PolicySpec> {
    if legacy {
        let mut v = vec![
            spec("MemoizationPolicy"),
            spec("KerasPolicy"),
            spec("MappingPolicy"),
        ];
        if !domain.forms.is_empty() {
            v.push(spec("FormPolicy"));
        }
        v
    } else {
        vec![
            spec("MemoizationPolicy"),
            spec("RulePolicy"),
            spec("UnexpecTEDIntentPolicy"),
            spec("TEDPolicy"),
        ]
    }
}

/// Trains the configured policies into an ensemble.
pub fn build_ensemble(
    cfg: &ProjectConfig,
    specs: &[PolicySpec],
    domain: &Domain,
    trackers: &[TrainingTracker],
    progress: &mut dyn FnMut(&str),
    warnings: &mut Vec<String>,
) -> Result<PolicyEnsemble, TrainError> {
    let mut ens = PolicyEnsemble {
        policies: Vec::new(),
        nlu_fallback_threshold: cfg.fallback_threshold,
        nlu_fallback_ambiguity_threshold: cfg.fallback_ambiguity_threshold,
        ..PolicyEnsemble::default()
    };
    for s in specs {
        let bare = s.name.rsplit('.').next().unwrap_or(&s.name);
        let num = |k: &str| s.params.get(k).and_then(Value::as_f64);
        let flag = |k: &str, d: bool| s.params.get(k).and_then(Value::as_bool).unwrap_or(d);
        let prio = |d: u8| num("priority").map_or(d, |p| p as u8);
        let max_history = |d: usize| match s.params.get("max_history") {
            Some(Value::Null) => 50,
            Some(v) => v.as_u64().map_or(d, |n| n as usize),
            None => d,
        };
        let policy = match bare {
            "MemoizationPolicy" | "AugmentedMemoizationPolicy" => {
                let mut m = MemoizationPolicy::new(bare == "AugmentedMemoizationPolicy", max_history(5), prio(3));
                m.train(domain, trackers);
                Policy::Memoization(m)
            }
            "RulePolicy" => {
                let mut r = RulePolicy {
                    priority: prio(6),
                    core_fallback_threshold: num("core_fallback_threshold").unwrap_or(0.3),
                    core_fallback_action_name: s
                        .params
                        .get("core_fallback_action_name")
                        .and_then(Value::as_str)
                        .unwrap_or("action_default_fallback")
                        .to_string(),
                    enable_fallback_prediction: flag("enable_fallback_prediction", true),
                    restrict_rules: flag("restrict_rules", true),
                    check_for_contradictions: flag("check_for_contradictions", true),
                    rules: Vec::new(),
                };
                if !domain.has_action(&r.core_fallback_action_name) {
                    return Err(TrainError::Config(DataError::at(
                        &cfg.file,
                        s.line,
                        format!("core_fallback_action_name `{}` is not an action of the domain", r.core_fallback_action_name),
                    )));
                }
                r.train(domain, trackers).map_err(TrainError::RuleContradictions)?;
                Policy::Rule(r)
            }
            "MappingPolicy" => Policy::Mapping(MappingPolicy::new(domain, prio(2))),
            "FormPolicy" => {
                let mut f = FormPolicy::new(prio(5));
                f.train(domain, trackers);
                Policy::Form(f)
            }
            "FallbackPolicy" => {
                let f = FallbackPolicy {
                    priority: prio(4),
                    nlu_threshold: num("nlu_threshold").unwrap_or(0.3),
                    core_threshold: num("core_threshold").unwrap_or(0.3),
                    fallback_action_name: s
                        .params
                        .get("fallback_action_name")
                        .and_then(Value::as_str)
                        .unwrap_or("action_default_fallback")
                        .to_string(),
                };
                ens.nlu_fallback_threshold.get_or_insert(f.nlu_threshold);
                Policy::Fallback(f)
            }
            _ if NOT_IMPLEMENTED.contains(&bare) || s.name.contains('.') => {
                let w = format!(
                    "{}{}: skipping {}: Colloquy does not implement it (no machine-learning policies); the other policies still apply",
                    if cfg.file.is_empty() { "default config".to_string() } else { cfg.file.clone() },
                    if s.line > 0 { format!(":{}", s.line) } else { String::new() },
                    s.name
                );
                progress(&w);
                warnings.push(w);
                continue;
            }
            _ => {
                return Err(TrainError::Config(DataError::at(
                    &cfg.file,
                    s.line,
                    format!(
                        "unknown policy `{}` (known: MemoizationPolicy, AugmentedMemoizationPolicy, RulePolicy, MappingPolicy, FormPolicy, FallbackPolicy; skipped: {})",
                        s.name,
                        NOT_IMPLEMENTED.join(", ")
                    ),
                )))
            }
        };
        progress(&format!("Trained {}", policy.name()));
        ens.policies.push(policy);
    }
    Ok(ens)
}
