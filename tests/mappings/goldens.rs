//! Every sample in `mappings/samples.toml`: referrals render to their golden HL7 files and
//! PAS messages decode to their expected actions. `UPDATE_EXPECT=1` rewrites the goldens.
//! The referral JSON is read at test time, so edits to `samples/fhir` show up as diffs.

use ers_bridge::mapping::samples::{run_manifest, Outcome};

use super::root;

#[test]
fn every_sample_matches_its_golden_file() {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let results = run_manifest(&root("mappings/samples.toml")).unwrap();
    assert!(results.len() >= 30, "only {} samples", results.len());
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Pass => None,
            Outcome::Mismatch { actual, .. } if update => {
                std::fs::write(&r.path, actual).unwrap();
                None
            }
            Outcome::Mismatch { diff: d, .. } => Some(format!(
                "{}: mismatch (UPDATE_EXPECT=1 to accept)\n{d}",
                r.name
            )),
            Outcome::Failed(e) => Some(format!("{}: {e}", r.name)),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_official_referral_variants_have_a_golden_file() {
    let manifest = std::fs::read_to_string(root("mappings/samples.toml")).unwrap();
    for entry in std::fs::read_dir(root("samples/fhir/referrals")).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .replace(".json", "");
        assert!(
            manifest.contains(&format!("expected = \"../samples/hl7v2/{name}.hl7\"")),
            "{name} has no REF^I12 golden file"
        );
    }
}
