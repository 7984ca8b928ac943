//! The loaded model, as the HTTP layer and the engine see it.

use std::sync::Arc;

use crate::domain::Domain;
use crate::model::Model;

/// A model that is loaded and serving.
pub struct Agent {
    pub model: Arc<Model>,
    pub model_id: String,
    pub model_file: String,
    pub fingerprint: String,
    /// `assistant_id` from config.yml, else the model's file name without extension (as
    /// Rasa 3.6 stamps it into event metadata).
    pub assistant_id: String,
    /// The metadata stamped into every new event, shared by them (`engine::event::model_stamp`).
    pub stamp: crate::engine::event::Metadata,
    pub domain: Arc<Domain>,
}

impl Agent {
    pub fn new(model: Model) -> Agent {
        let assistant_id = model
            .metadata
            .assistant_id
            .clone()
            .unwrap_or_else(|| model.file_name.trim_end_matches(".tar.gz").to_string());
        Agent {
            model_id: model.id.clone(),
            model_file: model.file_name.clone(),
            fingerprint: model.fingerprint.clone(),
            stamp: crate::engine::event::model_stamp(&model.id, &assistant_id),
            assistant_id,
            domain: Arc::new(model.domain.clone()),
            model: Arc::new(model),
        }
    }
}
