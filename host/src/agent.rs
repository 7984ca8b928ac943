//! The loaded model, as the HTTP layer and the engine see it.

use std::sync::Arc;

use crate::domain::Domain;

/// A model that is loaded and serving.
pub struct Agent {
    pub model_id: String,
    pub model_file: String,
    pub fingerprint: String,
    pub assistant_id: String,
    pub domain: Arc<Domain>,
}
