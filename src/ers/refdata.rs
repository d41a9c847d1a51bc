//! The A004 reference data cache: code systems (e.g. `SPECIALTY`) read once and refreshed
//! when older than a day, so the pipeline does not spend its e-RS rate limit on data that
//! changes rarely. A failed refresh keeps serving the previous copy.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::ers::{ErsClient, ErsError};
use crate::fhir::CodeSystem;

/// How long a code system is served before it is read again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A cached code system and when it was read.
type Entry = (Instant, Arc<CodeSystem>);

/// A shared cache of A004 code systems by type.
#[derive(Debug, Clone, Default)]
pub struct RefDataCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl RefDataCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The code system, from the cache when fresher than [`REFRESH_AFTER`], else from
    /// e-RS. When the refresh fails and an older copy exists, the older copy is returned.
    pub async fn get(
        &self,
        ers: &ErsClient,
        code_system_type: &str,
    ) -> Result<Arc<CodeSystem>, ErsError> {
        let mut entries = self.entries.lock().await;
        if let Some((at, cs)) = entries.get(code_system_type) {
            if at.elapsed() < REFRESH_AFTER {
                return Ok(cs.clone());
            }
        }
        match ers.reference_data(code_system_type).await {
            Ok(cs) => {
                let cs = Arc::new(cs);
                entries.insert(code_system_type.to_string(), (Instant::now(), cs.clone()));
                Ok(cs)
            }
            Err(e) => match entries.get(code_system_type) {
                Some((_, old)) => {
                    tracing::warn!(code_system = code_system_type, error = %e, "reference data refresh failed, keeping the old copy");
                    Ok(old.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Forgets everything (the next `get` reads from e-RS).
    pub async fn clear(&self) {
        self.entries.lock().await.clear();
    }
}
