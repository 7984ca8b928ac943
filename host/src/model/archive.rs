//! The model archive: a `.tar.gz` with `metadata.json`, `domain.json`, `policies.json` and
//! `nlu.json`. `metadata.json` records the sha256 of every other member, checked on load.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::Domain;
use crate::policy::PolicyEnsemble;
use crate::training::NluData;

use super::ModelError;

/// Bumped when the archive layout or the policy data changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub colloquy_version: String,
    pub format_version: u32,
    /// uuid4 as 32 hex digits (Rasa's `model_id`).
    pub model_id: String,
    /// sha256 of the training inputs.
    pub fingerprint: String,
    pub trained_at: String,
    pub training_time_seconds: f64,
    #[serde(default)]
    pub assistant_id: Option<String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub legacy: bool,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Member name → sha256 hex.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

pub const METADATA: &str = "metadata.json";
pub const DOMAIN: &str = "domain.json";
pub const POLICIES: &str = "policies.json";
pub const NLU: &str = "nlu.json";
/// The trained embedded NLU (`crate::nlu::NluModel`); absent in archives made before it existed.
pub const NLU_MODEL: &str = "nlu_model.json";

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "proud",
    "quick", "witty",
];
const NOUNS: &[&str] = &[
    "otter", "falcon", "maple", "harbor", "meadow", "comet", "lantern", "pebble", "river",
    "summit", "willow", "zephyr",
];

/// `20240101-120000-brave-otter.tar.gz`, or `<fixed>.tar.gz`.
pub fn model_file_name(fixed: Option<&str>) -> String {
    match fixed {
        Some(f) => {
            let f = f.trim_end_matches(".tar.gz");
            format!("{f}.tar.gz")
        }
        None => {
            let mut rng = rand::rng();
            format!(
                "{}-{}-{}.tar.gz",
                chrono::Local::now().format("%Y%m%d-%H%M%S"),
                ADJECTIVES.choose(&mut rng).unwrap_or(&"brave"),
                NOUNS.choose(&mut rng).unwrap_or(&"otter")
            )
        }
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn append(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, data)
}

pub fn write(
    domain: &Domain,
    policies: &PolicyEnsemble,
    nlu: &NluData,
    nlu_model: &crate::nlu::NluModel,
    mut meta: ModelMetadata,
) -> Result<Vec<u8>, String> {
    let members: Vec<(&str, Vec<u8>)> = vec![
        (
            DOMAIN,
            serde_json::to_vec_pretty(&domain.to_json()).map_err(|e| e.to_string())?,
        ),
        (
            POLICIES,
            serde_json::to_vec(policies).map_err(|e| e.to_string())?,
        ),
        (NLU, serde_json::to_vec(nlu).map_err(|e| e.to_string())?),
        (
            NLU_MODEL,
            serde_json::to_vec(nlu_model).map_err(|e| e.to_string())?,
        ),
    ];
    meta.files = members
        .iter()
        .map(|(n, b)| (n.to_string(), sha(b)))
        .collect();
    let meta_bytes = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let io = |e: std::io::Error| e.to_string();
    append(&mut tar, METADATA, &meta_bytes).map_err(io)?;
    for (n, b) in &members {
        append(&mut tar, n, b).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

/// The members of an archive (bounded, so a hostile upload cannot exhaust memory).
pub fn members(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ModelError> {
    const MAX: u64 = 512 * 1024 * 1024;
    let mut ar = tar::Archive::new(GzDecoder::new(bytes));
    let mut out = BTreeMap::new();
    let mut total = 0;
    let entries = ar
        .entries()
        .map_err(|e| ModelError::Invalid(format!("not a .tar.gz archive: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| ModelError::Invalid(format!("corrupt archive: {e}")))?;
        let name = e
            .path()
            .map_err(|e| ModelError::Invalid(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        total += e.size();
        if total > MAX {
            return Err(ModelError::Invalid("archive too large".into()));
        }
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)
            .map_err(|e| ModelError::Invalid(format!("corrupt archive: {e}")))?;
        out.insert(name, buf);
    }
    Ok(out)
}

/// Reads only the metadata of an archive file.
pub fn read_metadata(path: &Path) -> Result<ModelMetadata, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    let m = members(&bytes)?;
    let raw = m
        .get(METADATA)
        .ok_or_else(|| ModelError::Invalid(format!("{METADATA} missing: not a Colloquy model")))?;
    serde_json::from_slice(raw).map_err(|e| ModelError::Invalid(format!("{METADATA}: {e}")))
}

/// The newest `.tar.gz` in a directory (by modification time, then name).
pub fn newest_archive(dir: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".tar.gz"))
        .max_by_key(|p| {
            (
                std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                p.clone(),
            )
        })
}
