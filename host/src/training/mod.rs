//! `colloquy train`: compiles a Rasa project (domain, config, stories/rules, NLU data) into a
//! Colloquy model archive. Also the body of `POST /model/train`.

pub mod config;
pub mod nlu;
pub mod stories_md;
pub mod stories_yaml;
pub mod story;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::{Domain, DomainError, Source};
use crate::model::archive::{self, ModelMetadata};
use crate::policy::{PolicyEnsemble, RuleContradiction};

pub use nlu::NluData;

/// A problem in an input file, with the file and (when known) the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DataError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl DataError {
    pub fn at(file: &str, line: usize, message: String) -> DataError {
        DataError {
            file: file.to_string(),
            line: (line > 0).then_some(line),
            message,
        }
    }
}

impl From<DomainError> for DataError {
    fn from(e: DomainError) -> Self {
        DataError {
            file: e.file,
            line: e.line,
            message: e.message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid domain: {0}")]
    Domain(#[from] DomainError),
    #[error("invalid training data: {0}")]
    Data(DataError),
    #[error("invalid config: {0}")]
    Config(DataError),
    #[error("rule problems found:\n{}", .0.iter().map(|c| format!("- {c}")).collect::<Vec<_>>().join("\n"))]
    RuleContradictions(Vec<RuleContradiction>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the model archive: {0}")]
    Archive(String),
}

impl TrainError {
    fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The flags of `rasa train`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub domain: PathBuf,
    pub data: Vec<PathBuf>,
    pub config: PathBuf,
    pub out: PathBuf,
    pub fixed_model_name: Option<String>,
    pub force: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            domain: "domain.yml".into(),
            data: vec!["data".into()],
            config: "config.yml".into(),
            out: "models".into(),
            fixed_model_name: None,
            force: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// The archive written, or the existing one when training was skipped.
    pub path: PathBuf,
    pub skipped: bool,
    pub fingerprint: String,
    pub warnings: Vec<String>,
}

/// The input files of a project.
#[derive(Debug, Clone, Default)]
pub struct ProjectSources {
    pub domain: Vec<Source>,
    pub config: Option<Source>,
    pub data: Vec<Source>,
}

impl ProjectSources {
    /// sha256 over every input (kind, name, content) and the model format version, so a
    /// change to any input, or to the archive format, gives a new fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "colloquy-model-format-{}\n",
            archive::FORMAT_VERSION
        ));
        let mut feed = |kind: &str, s: &Source| {
            h.update(format!("{kind}\0{}\0{}\0", s.name, s.text.len()));
            h.update(s.text.as_bytes());
        };
        self.domain.iter().for_each(|s| feed("domain", s));
        self.config.iter().for_each(|s| feed("config", s));
        self.data.iter().for_each(|s| feed("data", s));
        hex::encode(h.finalize())
    }
}

/// A trained model before it is written.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub domain: Domain,
    pub policies: PolicyEnsemble,
    pub nlu: NluData,
    /// The embedded NLU trained on `nlu` (with the pipeline's `FallbackClassifier` settings).
    pub nlu_model: crate::nlu::NluModel,
    pub assistant_id: Option<String>,
    pub warnings: Vec<String>,
}

/// Parses and trains everything (no file system access).
pub fn compile(p: &ProjectSources, progress: &mut dyn FnMut(&str)) -> Result<Compiled, TrainError> {
    let mut warnings = Vec::new();
    progress(&format!("Loading domain from {}", names(&p.domain)));
    let domain = Domain::from_sources(&p.domain)?;
    progress(&format!(
        "Domain: {} intents, {} entities, {} slots, {} responses, {} actions, {} forms",
        domain.intents.len(),
        domain.entities.len(),
        domain.slots.len(),
        domain.responses.len(),
        domain.action_names().len(),
        domain.forms.len()
    ));
    let mut blocks = Vec::new();
    let mut nlu = NluData::default();
    let mut md_stories = false;
    for s in &p.data {
        let is_md = s.name.ends_with(".md");
        if is_md && nlu::is_md_nlu(&s.text) {
            nlu::parse_md(s, &mut nlu).map_err(TrainError::Data)?;
        } else if is_md {
            md_stories = true;
            stories_md::parse(s, &mut blocks).map_err(TrainError::Data)?;
        } else {
            stories_yaml::parse(s, &mut blocks, &mut nlu, &mut warnings)
                .map_err(TrainError::Data)?;
        }
    }
    story::validate(&blocks, &domain, &mut warnings).map_err(TrainError::Data)?;
    let rules = blocks.iter().filter(|b| b.is_rule).count();
    progress(&format!(
        "Training data: {} stories, {rules} rules, {} NLU examples ({} intents)",
        blocks.len() - rules,
        nlu.examples.len(),
        nlu.intents().len()
    ));
    let trackers = story::build_trackers(&blocks);
    progress(&format!("Generated {} training trackers", trackers.len()));
    let cfg = config::parse(p.config.as_ref()).map_err(TrainError::Config)?;
    let specs = match &cfg.policies {
        Some(s) => s.clone(),
        None => {
            let w = "no policies configured: using Rasa's default policies".to_string();
            progress(&w);
            config::default_policies(domain.legacy || md_stories, &domain)
        }
    };
    let policies =
        config::build_ensemble(&cfg, &specs, &domain, &trackers, progress, &mut warnings)?;
    let nlu_config = crate::nlu::NluConfig {
        fallback_threshold: cfg.fallback_threshold,
        ambiguity_threshold: cfg.fallback_ambiguity_threshold,
    };
    let nlu_model = crate::nlu::NluModel::train(&nlu, &nlu_config);
    progress(&format!(
        "Trained the embedded NLU ({} intents)",
        nlu_model.intents().len()
    ));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Compiled {
        domain,
        policies,
        nlu,
        nlu_model,
        assistant_id: cfg.assistant_id,
        warnings,
    })
}

fn names(s: &[Source]) -> String {
    s.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn collect_files(path: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(&p, exts, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads the project files named by the options.
pub fn read_sources(opts: &TrainOptions) -> Result<ProjectSources, TrainError> {
    let mut files = Vec::new();
    if !opts.domain.exists() {
        return Err(TrainError::io(
            &opts.domain,
            std::io::Error::new(std::io::ErrorKind::NotFound, "domain file not found"),
        ));
    }
    collect_files(&opts.domain, &["yml", "yaml"], &mut files)
        .map_err(|e| TrainError::io(&opts.domain, e))?;
    let domain = files
        .iter()
        .map(|f| Source::read(f).map_err(|e| TrainError::io(f, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let config = if opts.config.is_file() {
        Some(Source::read(&opts.config).map_err(|e| TrainError::io(&opts.config, e))?)
    } else {
        None
    };
    let mut data = Vec::new();
    for d in &opts.data {
        if !d.exists() {
            return Err(TrainError::io(
                d,
                std::io::Error::new(std::io::ErrorKind::NotFound, "training data not found"),
            ));
        }
        let mut files = Vec::new();
        collect_files(d, &["yml", "yaml", "md"], &mut files).map_err(|e| TrainError::io(d, e))?;
        for f in files {
            data.push(Source::read(&f).map_err(|e| TrainError::io(&f, e))?);
        }
    }
    Ok(ProjectSources {
        domain,
        config,
        data,
    })
}

/// `colloquy train`: writes `<out>/<timestamp>-<name>.tar.gz` (or `<out>/<fixed>.tar.gz`),
/// unless the newest model in `out` already has this fingerprint (and `force` is off).
pub fn train(
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<TrainOutcome, TrainError> {
    let sources = read_sources(opts)?;
    if sources.config.is_none() {
        progress(&format!(
            "{} not found: using Rasa's default configuration",
            opts.config.display()
        ));
    }
    let fingerprint = sources.fingerprint();
    if !opts.force {
        if let Some(newest) = archive::newest_archive(&opts.out) {
            if archive::read_metadata(&newest).is_ok_and(|m| m.fingerprint == fingerprint) {
                progress(&format!(
                    "Nothing changed since {}: training skipped (use --force to train anyway)",
                    newest.display()
                ));
                return Ok(TrainOutcome {
                    path: newest,
                    skipped: true,
                    fingerprint,
                    warnings: Vec::new(),
                });
            }
        }
    }
    let (name, bytes, warnings) =
        build_archive(&sources, opts.fixed_model_name.as_deref(), progress)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let path = opts.out.join(&name);
    std::fs::write(&path, &bytes).map_err(|e| TrainError::io(&path, e))?;
    progress(&format!(
        "Your Colloquy model is trained and saved at '{}'.",
        path.display()
    ));
    Ok(TrainOutcome {
        path,
        skipped: false,
        fingerprint,
        warnings,
    })
}

fn build_archive(
    sources: &ProjectSources,
    fixed_name: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<(String, Vec<u8>, Vec<String>), TrainError> {
    let started = Instant::now();
    let compiled = compile(sources, progress)?;
    let name = archive::model_file_name(fixed_name);
    let meta = ModelMetadata {
        colloquy_version: env!("CARGO_PKG_VERSION").to_string(),
        format_version: archive::FORMAT_VERSION,
        model_id: uuid::Uuid::new_v4().simple().to_string(),
        fingerprint: sources.fingerprint(),
        trained_at: chrono::Utc::now().to_rfc3339(),
        training_time_seconds: started.elapsed().as_secs_f64(),
        assistant_id: compiled.assistant_id.clone(),
        policies: compiled
            .policies
            .policy_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        legacy: compiled.domain.legacy,
        warnings: compiled.warnings.clone(),
        files: Default::default(),
    };
    progress(&format!("Writing model {name}"));
    let bytes = archive::write(
        &compiled.domain,
        &compiled.policies,
        &compiled.nlu,
        &compiled.nlu_model,
        meta,
    )
    .map_err(TrainError::Archive)?;
    Ok((name, bytes, compiled.warnings))
}

const DOMAIN_KEYS: &[&str] = &[
    "version",
    "intents",
    "entities",
    "slots",
    "responses",
    "templates",
    "actions",
    "forms",
    "session_config",
    "e2e_actions",
];
const CONFIG_KEYS: &[&str] = &["recipe", "language", "pipeline", "policies", "assistant_id"];

fn yaml_text(map: &Map<String, Value>) -> String {
    serde_norway::to_string(&Value::Object(map.clone())).unwrap_or_default()
}

/// `POST /model/train`: one YAML document with domain, config and training-data keys at the
/// top level (3.x), or 0.x-style string values under `domain`, `config`, `nlu`, `stories`.
/// Returns the archive's file name and bytes; writes it to `out_dir` too when given.
pub fn train_from_yaml_document(
    yaml: &str,
    out_dir: Option<&Path>,
) -> Result<(String, Vec<u8>), TrainError> {
    const REQ: &str = "request body";
    let doc = crate::domain::parse::yaml_to_json(yaml, REQ)?;
    let map = doc.as_object().cloned().ok_or_else(|| {
        TrainError::Data(DataError::at(
            REQ,
            1,
            "the body must be a YAML mapping".into(),
        ))
    })?;
    let mut p = ProjectSources::default();
    let (mut dom, mut cfg, mut data) = (Map::new(), Map::new(), Map::new());
    for (k, v) in &map {
        match (k.as_str(), v) {
            ("domain", Value::String(s)) => p.domain.push(Source {
                name: "domain".into(),
                text: s.clone(),
            }),
            ("config", Value::String(s)) => {
                p.config = Some(Source {
                    name: "config".into(),
                    text: s.clone(),
                })
            }
            ("nlu", Value::String(s)) => p.data.push(Source {
                name: "nlu.md".into(),
                text: s.clone(),
            }),
            ("stories", Value::String(s)) => p.data.push(Source {
                name: "stories.md".into(),
                text: s.clone(),
            }),
            ("rules", Value::String(s)) => p.data.push(Source {
                name: "rules.yml".into(),
                text: s.clone(),
            }),
            ("config", Value::Object(m)) => cfg.extend(m.clone()),
            ("domain", Value::Object(m)) => dom.extend(m.clone()),
            (k, _) if DOMAIN_KEYS.contains(&k) => {
                dom.insert(k.to_string(), v.clone());
                if k == "version" {
                    data.insert(k.to_string(), v.clone());
                }
            }
            (k, _) if CONFIG_KEYS.contains(&k) => {
                cfg.insert(k.to_string(), v.clone());
            }
            ("nlu" | "stories" | "rules", _) => {
                data.insert(k.clone(), v.clone());
            }
            // Server options of the 3.x endpoint, not part of the project.
            ("force" | "save_to_default_model_directory" | "callback_url" | "config_path", _) => {}
            (k, _) => {
                return Err(TrainError::Data(DataError::at(
                    REQ,
                    crate::domain::parse::find_line(yaml, k).unwrap_or(1),
                    format!("unknown key `{k}` in the training request"),
                )))
            }
        }
    }
    if !dom.is_empty() {
        p.domain.push(Source {
            name: "domain.yml".into(),
            text: yaml_text(&dom),
        });
    }
    if !cfg.is_empty() {
        p.config = Some(Source {
            name: "config.yml".into(),
            text: yaml_text(&cfg),
        });
    }
    if data.keys().any(|k| k != "version") {
        p.data.push(Source {
            name: "data.yml".into(),
            text: yaml_text(&data),
        });
    }
    if p.domain.is_empty() {
        return Err(TrainError::Data(DataError::at(
            REQ,
            1,
            "the training request has no domain".into(),
        )));
    }
    let (name, bytes, _) = build_archive(&p, None, &mut |m| tracing::info!("{m}"))?;
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(&name);
        std::fs::write(&path, &bytes).map_err(|e| TrainError::io(&path, e))?;
    }
    Ok((name, bytes))
}

/// `colloquy test nlu --cross-validation`: k-fold cross-validation of the embedded NLU on the
/// NLU data found in `paths` (files or directories).
pub fn evaluate_nlu(
    paths: &[PathBuf],
    folds: usize,
    seed: u64,
) -> Result<crate::nlu::Report, TrainError> {
    let arg_error = |m: String| TrainError::Config(DataError::at("command line", 0, m));
    if folds < 2 {
        return Err(arg_error(format!(
            "--folds must be at least 2, not {folds}"
        )));
    }
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &["yml", "yaml", "md"], &mut files).map_err(|e| TrainError::io(p, e))?;
    }
    let mut nlu = NluData::default();
    let (mut blocks, mut warnings) = (Vec::new(), Vec::new());
    for f in &files {
        let s = Source::read(f).map_err(|e| TrainError::io(f, e))?;
        if s.name.ends_with(".md") {
            if nlu::is_md_nlu(&s.text) {
                nlu::parse_md(&s, &mut nlu).map_err(TrainError::Data)?;
            }
        } else {
            stories_yaml::parse(&s, &mut blocks, &mut nlu, &mut warnings)
                .map_err(TrainError::Data)?;
        }
    }
    if nlu.examples.is_empty() {
        return Err(arg_error("no NLU examples found".into()));
    }
    Ok(crate::nlu::cross_validate(&nlu, folds, seed))
}
