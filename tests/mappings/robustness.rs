//! No input may panic: every file in `../shared/hl7-samples/` (third-party messages and
//! fuzzer-found bad inputs), whole and split per message, goes through the guarded reader
//! and the inbound summariser. Known-good files must read; silent truncation must not.

use ers_bridge::hl7::{read, read::DEFAULT_MAX_BYTES, read_inbound};

fn samples() -> Vec<(String, Vec<u8>)> {
    let out = crate::common::sample_files("../shared/hl7-samples");
    assert!(
        out.len() >= 25,
        "expected the shared corpus, found {} files",
        out.len()
    );
    out
}

/// Splits a multi-message file at each line starting with MSH.
fn split_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("MSH") || out.is_empty() {
            out.push(String::new());
        }
        let last = out.last_mut().unwrap();
        last.push_str(line);
        last.push('\r');
    }
    out.into_iter().map(String::into_bytes).collect()
}

#[test]
fn no_shared_sample_panics_and_good_ones_read() {
    let mut read_ok = 0;
    for (name, bytes) in samples() {
        let whole = read(&bytes);
        let _ = read_inbound(&bytes, DEFAULT_MAX_BYTES);
        for part in split_messages(&bytes) {
            if let Ok(m) = read(&part) {
                read_ok += 1;
                // Whatever reads must have kept every segment: no silent truncation.
                let lines = String::from_utf8_lossy(&part)
                    .split('\r')
                    .filter(|l| !l.is_empty())
                    .count();
                assert_eq!(m.segments.len(), lines, "{name}: segments lost");
            }
            let _ = read_inbound(&part, DEFAULT_MAX_BYTES);
        }
        if name.starts_with("hl7parser__sample_adt_a04")
            || name == "hapi__adt_a03.txt"
            || name == "hapi__omd_o03_rep.txt"
        {
            let m = whole.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(m.segments.len() > 3, "{name}");
        }
        if name.starts_with("nhapi_bad__legacy_ense") || name.contains("leading_nul") {
            assert!(whole.is_err(), "{name} should be refused");
        }
    }
    assert!(read_ok >= 20, "only {read_ok} messages read");
}

#[test]
fn non_standard_delimiters_are_honoured() {
    let (_, bytes) = samples()
        .into_iter()
        .find(|(n, _)| n == "hapi__segmentfinder_a24.hl7")
        .unwrap();
    let m = read(&bytes).unwrap();
    assert_eq!(m.delimiters.component, '~');
    assert_eq!(m.delimiters.repetition, '|');
    assert_eq!(m.delimiters.field, '^');
}

#[test]
fn lf_in_msh2_and_oversize_are_refused() {
    let (_, bytes) = samples()
        .into_iter()
        .find(|(n, _)| n.contains("id000029_lf_in_msh2"))
        .unwrap();
    assert!(read(&bytes).is_err());
    let big = vec![b'A'; 1024];
    assert!(ers_bridge::hl7::read_with_limit(&big, 100).is_err());
}
