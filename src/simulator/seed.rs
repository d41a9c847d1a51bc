//! Seeding the world from a folder: `referrals/*.json` (ReferralRequest) and
//! `advice/*.json` (CommunicationRequest), read in file-name order.

use std::path::Path;

use serde_json::Value;

use super::{state::World, SimError};

/// Loads every `*.json` under `dir/referrals` and `dir/advice` into `world`.
pub fn load_dir(world: &mut World, dir: &Path) -> Result<(), SimError> {
    if !dir.is_dir() {
        return Err(SimError::SeedRead {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    for (sub, is_referral) in [("referrals", true), ("advice", false)] {
        let folder = dir.join(sub);
        if !folder.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|source| SimError::SeedRead {
                path: folder.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| SimError::SeedRead {
                path: path.clone(),
                source,
            })?;
            let json: Value = serde_json::from_str(&text).map_err(|e| SimError::SeedInvalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let inserted = if is_referral {
                world.insert_referral(json)
            } else {
                world.insert_advice(json)
            };
            inserted.map_err(|e| SimError::SeedInvalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_samples() {
        let mut w = World::default();
        load_dir(
            &mut w,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fhir")),
        )
        .unwrap();
        assert!(w.referrals.len() >= 9, "{}", w.referrals.len());
        assert!(w.advice.contains_key("000000080000"));
        for (id, b) in &w.binaries {
            assert!(!b.owner.is_empty(), "{id}");
        }
    }

    #[test]
    fn missing_dir_is_an_error() {
        let mut w = World::default();
        let err = load_dir(&mut w, Path::new("/nonexistent/seed")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/seed"));
    }
}
