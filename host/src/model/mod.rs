//! A trained Colloquy model, as loaded from its archive.

pub mod archive;

use std::path::Path;

use crate::domain::Domain;
use crate::policy::PolicyEnsemble;
use crate::training::NluData;

pub use archive::ModelMetadata;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("no model archive (.tar.gz) in {0}")]
    NoModel(String),
    #[error("invalid model archive: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct Model {
    /// Rasa's `model_id`: 32 hex digits, new for every training run.
    pub id: String,
    /// Content hash of the training inputs.
    pub fingerprint: String,
    pub file_name: String,
    pub domain: Domain,
    pub policies: PolicyEnsemble,
    pub nlu_data: NluData,
    /// The embedded NLU (`None` for an archive made before it was stored).
    pub nlu: Option<crate::nlu::NluModel>,
    pub metadata: ModelMetadata,
}

impl Model {
    /// Loads an archive file, or the newest archive of a directory.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let file = if path.is_dir() {
            archive::newest_archive(path)
                .ok_or_else(|| ModelError::NoModel(path.display().to_string()))?
        } else {
            path.to_path_buf()
        };
        let bytes =
            std::fs::read(&file).map_err(|e| ModelError::Io(file.display().to_string(), e))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Model::from_bytes(&bytes, &name)
    }

    /// Loads an archive from memory (a model server download or an upload), verifying the
    /// format version and the checksum of every member.
    pub fn from_bytes(bytes: &[u8], file_name: &str) -> Result<Model, ModelError> {
        use sha2::{Digest, Sha256};
        let members = archive::members(bytes)?;
        let get = |n: &str| {
            members
                .get(n)
                .ok_or_else(|| ModelError::Invalid(format!("{n} missing: not a Colloquy model")))
        };
        let metadata: ModelMetadata = serde_json::from_slice(get(archive::METADATA)?)
            .map_err(|e| ModelError::Invalid(format!("metadata.json: {e}")))?;
        if metadata.format_version != archive::FORMAT_VERSION {
            return Err(ModelError::Invalid(format!(
                "model format {} is not supported (this Colloquy reads format {}); retrain with `colloquy train`",
                metadata.format_version,
                archive::FORMAT_VERSION
            )));
        }
        for n in [archive::DOMAIN, archive::POLICIES, archive::NLU] {
            let expected = metadata
                .files
                .get(n)
                .ok_or_else(|| ModelError::Invalid(format!("no checksum for {n}")))?;
            if &hex::encode(Sha256::digest(get(n)?)) != expected {
                return Err(ModelError::Invalid(format!(
                    "{n} does not match its checksum: the archive is corrupt"
                )));
            }
        }
        let nlu = match members.get(archive::NLU_MODEL) {
            None => None,
            Some(b) => {
                let n = archive::NLU_MODEL;
                let expected = metadata
                    .files
                    .get(n)
                    .ok_or_else(|| ModelError::Invalid(format!("no checksum for {n}")))?;
                if &hex::encode(Sha256::digest(b)) != expected {
                    return Err(ModelError::Invalid(format!(
                        "{n} does not match its checksum: the archive is corrupt"
                    )));
                }
                Some(
                    serde_json::from_slice(b)
                        .map_err(|e| ModelError::Invalid(format!("{n}: {e}")))?,
                )
            }
        };
        let domain_json: serde_json::Value = serde_json::from_slice(get(archive::DOMAIN)?)
            .map_err(|e| ModelError::Invalid(format!("domain.json: {e}")))?;
        let mut domain =
            Domain::from_json(&domain_json).map_err(|e| ModelError::Invalid(e.to_string()))?;
        domain.legacy = metadata.legacy;
        let policies = serde_json::from_slice(get(archive::POLICIES)?)
            .map_err(|e| ModelError::Invalid(format!("policies.json: {e}")))?;
        let nlu_data = serde_json::from_slice(get(archive::NLU)?)
            .map_err(|e| ModelError::Invalid(format!("nlu.json: {e}")))?;
        Ok(Model {
            id: metadata.model_id.clone(),
            fingerprint: metadata.fingerprint.clone(),
            file_name: file_name.to_string(),
            domain,
            policies,
            nlu_data,
            nlu,
            metadata,
        })
    }
}
