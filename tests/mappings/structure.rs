//! The published messages are structurally valid for their declared version: segment order
//! and cardinality of HL7V2.md §2 and the required fields, checked in Rust.

use ers_bridge::hl7::{read, structure::validate};

use super::root;

fn golden_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            golden_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "hl7") {
            out.push(path);
        }
    }
}

#[test]
fn every_published_message_is_valid_for_its_version() {
    let mut files = Vec::new();
    golden_files(&root("samples/hl7v2"), &mut files);
    let mut seen = std::collections::BTreeSet::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let msg = read(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (kind, event, _) = msg.message_type();
        let version = msg.segment("MSH").unwrap().comp(12, 1).to_string();
        seen.insert(format!("{kind}^{event} {version}"));
        if let Err(errors) = validate(&msg) {
            panic!("{}: {errors:#?}", file.display());
        }
    }
    for want in [
        "REF^I12 2.4",
        "REF^I12 2.5.1",
        "REF^I13 2.4",
        "REF^I14 2.4",
        "REF^I14 2.5.1",
        "ADT^A28 2.4",
        "ADT^A28 2.5.1",
    ] {
        assert!(seen.contains(want), "no golden {want}: {seen:?}");
    }
}

#[test]
fn the_inbound_samples_are_valid_or_reported() {
    // The PAS samples include deliberately broken ones; the good ACK/RRI must validate.
    for name in [
        "ack-error-v24",
        "ack-error-v251",
        "rri-accepted",
        "rri-rejected",
    ] {
        let bytes = std::fs::read(root(&format!("samples/pas/{name}.hl7"))).unwrap();
        let msg = read(&bytes).unwrap();
        assert_eq!(validate(&msg), Ok(()), "{name}");
    }
    let bytes = std::fs::read(root("samples/pas/rri-accepted-no-msh93-zsegment.hl7")).unwrap();
    let errors = validate(&read(&bytes).unwrap()).unwrap_err();
    assert!(errors[0].contains("found ZPA"), "{errors:?}");
}
