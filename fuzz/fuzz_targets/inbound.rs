//! Coverage-guided fuzzing of the inbound path's pure part (issue 21): the guarded HL7
//! reader (`hl7::read_with_limit`), the summary the pipeline correlates on
//! (`hl7::ack::summarise`: MSH, MSA, RF1 read as codes and identifiers) and the decision
//! table of `mappings/inbound.toml`. Any input must end in an error or a decision, never a
//! panic or a hang.
//! `scripts/fuzz.sh` runs it (bounded), seeded with the PAS samples and
//! `../shared/hl7-samples/`.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use ers_bridge::hl7::ack::summarise;
use ers_bridge::hl7::read_with_limit;
use ers_bridge::mapping::DecisionTable;
use libfuzzer_sys::fuzz_target;

static TABLE: OnceLock<DecisionTable> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let table = TABLE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/inbound.toml");
        DecisionTable::load(&path).expect("the inbound decision table loads")
    });
    let Ok(message) = read_with_limit(data, 1 << 20) else {
        return;
    };
    let Ok(summary) = summarise(&message) else {
        return;
    };
    let _ = table.decide(&summary);
});
