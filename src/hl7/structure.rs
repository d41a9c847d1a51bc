//! Structural validation of a message against its declared structure and version
//! (HL7V2.md §2): segment order and cardinality, plus the required fields we rely on.
//!
//! The grammars cover what the bridge sends and reads: REF_I12 (also REF^I13/I14), RRI_I12,
//! ADT_A05 (A28/A31), ADT_A01 (A04) and ACK, in v2.4 and v2.5.1 (which adds `SFT` after
//! MSH). Matching is greedy without backtracking, which is exact for these grammars
//! because every group starts with a segment that cannot follow where it may appear.

use super::message::{Message, Segment};

const MANY: usize = usize::MAX;

/// One element of a structure: a segment or a group, with its cardinality.
#[derive(Debug, Clone)]
enum Node {
    Seg(&'static str, usize, usize),
    Group(&'static str, usize, usize, Vec<Node>),
}

use Node::{Group, Seg};

fn sft(v251: bool) -> Node {
    Seg("SFT", 0, if v251 { MANY } else { 0 })
}

/// MSH to PROVIDER_CONTACT of REF_I12 and RRI_I12 (only RRI has the `MSA`).
fn referral_head(v251: bool, msa: bool) -> Vec<Node> {
    let mut nodes = vec![Seg("MSH", 1, 1), sft(v251)];
    if msa {
        nodes.push(Seg("MSA", 0, 1));
    }
    nodes.extend([
        Seg("RF1", 0, 1),
        authorization_contact(),
        Group(
            "PROVIDER_CONTACT",
            1,
            MANY,
            vec![Seg("PRD", 1, 1), Seg("CTD", 0, MANY)],
        ),
    ]);
    nodes
}

/// ACC to the final NTE, shared by REF_I12 and RRI_I12.
fn referral_tail() -> Vec<Node> {
    vec![
        Seg("ACC", 0, 1),
        Seg("DG1", 0, MANY),
        Seg("DRG", 0, MANY),
        Seg("AL1", 0, MANY),
        procedure(),
        observation(),
        Group(
            "PATIENT_VISIT",
            0,
            1,
            vec![Seg("PV1", 1, 1), Seg("PV2", 0, 1)],
        ),
        Seg("NTE", 0, MANY),
    ]
}

fn ref_i12(v251: bool) -> Vec<Node> {
    let mut nodes = referral_head(v251, false);
    nodes.extend([
        Seg("PID", 1, 1),
        Seg("NK1", 0, MANY),
        Seg("GT1", 0, MANY),
        Group(
            "INSURANCE",
            0,
            MANY,
            vec![Seg("IN1", 1, 1), Seg("IN2", 0, 1), Seg("IN3", 0, 1)],
        ),
    ]);
    nodes.extend(referral_tail());
    nodes
}

fn authorization_contact() -> Node {
    Group(
        "AUTHORIZATION_CONTACT",
        0,
        1,
        vec![Seg("AUT", 1, 1), Seg("CTD", 0, 1)],
    )
}

fn procedure() -> Node {
    Group(
        "PROCEDURE",
        0,
        MANY,
        vec![Seg("PR1", 1, 1), authorization_contact()],
    )
}

fn observation() -> Node {
    Group(
        "OBSERVATION",
        0,
        MANY,
        vec![
            Seg("OBR", 1, 1),
            Seg("NTE", 0, MANY),
            Group(
                "RESULTS_NOTES",
                0,
                MANY,
                vec![Seg("OBX", 1, 1), Seg("NTE", 0, MANY)],
            ),
        ],
    )
}

fn rri_i12(v251: bool) -> Vec<Node> {
    let mut nodes = referral_head(v251, true);
    nodes.push(Seg("PID", 1, 1));
    nodes.extend(referral_tail());
    nodes
}

fn adt(v251: bool, a01: bool) -> Vec<Node> {
    let mut nodes = vec![
        Seg("MSH", 1, 1),
        sft(v251),
        Seg("EVN", 1, 1),
        Seg("PID", 1, 1),
        Seg("PD1", 0, 1),
        Seg("ROL", 0, MANY),
        Seg("NK1", 0, MANY),
        Seg("PV1", 1, 1),
        Seg("PV2", 0, 1),
        Seg("ROL", 0, MANY),
        Seg("DB1", 0, MANY),
        Seg("OBX", 0, MANY),
        Seg("AL1", 0, MANY),
        Seg("DG1", 0, MANY),
        Seg("DRG", 0, 1),
        Group(
            "PROCEDURE",
            0,
            MANY,
            vec![Seg("PR1", 1, 1), Seg("ROL", 0, MANY)],
        ),
        Seg("GT1", 0, MANY),
        Group(
            "INSURANCE",
            0,
            MANY,
            vec![
                Seg("IN1", 1, 1),
                Seg("IN2", 0, 1),
                Seg("IN3", 0, MANY),
                Seg("ROL", 0, MANY),
            ],
        ),
        Seg("ACC", 0, 1),
        Seg("UB1", 0, 1),
        Seg("UB2", 0, 1),
    ];
    if a01 && !v251 {
        nodes.push(Seg("PDA", 0, 1));
    }
    nodes
}

fn ack(v251: bool) -> Vec<Node> {
    vec![
        Seg("MSH", 1, 1),
        sft(v251),
        Seg("MSA", 1, 1),
        Seg("ERR", 0, if v251 { MANY } else { 1 }),
    ]
}

/// The fields that must be non-empty in every occurrence of a segment.
fn required_fields(segment: &str, v251: bool) -> &'static [usize] {
    match (segment, v251) {
        ("MSH", _) => &[1, 2, 7, 9, 10, 11, 12],
        ("MSA", _) => &[1, 2],
        ("RF1", _) => &[6],
        ("PRD", _) => &[1],
        ("PID", _) => &[3, 5],
        ("OBR", _) => &[4],
        ("OBX", _) => &[2, 3, 11],
        ("EVN", _) => &[2],
        ("PV1", _) => &[2],
        ("DG1", _) => &[1, 6],
        ("ERR", false) => &[1],
        ("ERR", true) => &[3, 4],
        _ => &[],
    }
}

/// Checks `msg` against the structure named by MSH-9 and the version in MSH-12. Returns
/// every problem found, each naming the segment and what is wrong.
pub fn validate(msg: &Message) -> Result<(), Vec<String>> {
    let Some(msh) = msg.segments.first().filter(|s| s.id == "MSH") else {
        return Err(vec!["the message does not start with MSH".into()]);
    };
    let v251 = match msh.comp(12, 1) {
        "2.4" => false,
        "2.5.1" => true,
        other => return Err(vec![format!("MSH-12: unsupported version {other:?}")]),
    };
    let (kind, event, structure) = msg.message_type();
    let structure = if structure.is_empty() {
        match (kind, event) {
            ("REF", _) => "REF_I12",
            ("RRI", _) => "RRI_I12",
            ("ADT", "A04" | "A01") => "ADT_A01",
            ("ADT", _) => "ADT_A05",
            ("ACK", _) => "ACK",
            _ => "",
        }
    } else {
        structure
    };
    let grammar = match structure {
        "REF_I12" => ref_i12(v251),
        "RRI_I12" => rri_i12(v251),
        "ADT_A05" => adt(v251, false),
        "ADT_A01" => adt(v251, true),
        "ACK" => ack(v251),
        other => return Err(vec![format!("MSH-9: unknown structure {other:?}")]),
    };
    let mut errors = Vec::new();
    match match_seq(&grammar, &msg.segments, 0) {
        Ok(end) if end < msg.segments.len() => errors.push(format!(
            "segment {} ({}): not allowed here in {structure}",
            end + 1,
            msg.segments[end].id
        )),
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    for (i, seg) in msg.segments.iter().enumerate() {
        for &f in required_fields(&seg.id, v251) {
            if !seg.has(f) {
                errors.push(format!(
                    "segment {} ({}): required field {}-{f} is empty",
                    i + 1,
                    seg.id,
                    seg.id
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Matches `nodes` in order from `pos`; returns the position after the match.
fn match_seq(nodes: &[Node], segs: &[Segment], mut pos: usize) -> Result<usize, String> {
    for node in nodes {
        let (name, min, max) = match node {
            Seg(id, min, max) => (*id, *min, *max),
            Group(name, min, max, _) => (*name, *min, *max),
        };
        let mut count = 0;
        while count < max {
            let next = match node {
                Seg(id, ..) => (segs.get(pos).is_some_and(|s| s.id == *id)).then_some(pos + 1),
                Group(_, _, _, children) => {
                    match_seq(children, segs, pos).ok().filter(|&p| p > pos)
                }
            };
            match next {
                Some(p) => {
                    pos = p;
                    count += 1;
                }
                None => break,
            }
        }
        if count < min {
            let found = segs
                .get(pos)
                .map_or("the end of the message", |s| s.id.as_str());
            return Err(format!(
                "segment {}: missing required {name}, found {found}",
                pos + 1
            ));
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::read::read;

    const REF: &str = "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000||REF^I12^REF_I12|ERSB-000000070000-1|P|2.4|||AL|AL|GBR|8859/1|EN\rRF1|P^Pending^HL70283|R^Routine^HL70280^ROUTINE^Routine^ERS|Med^Medical^HL70281|AM^Assume management^HL70282|O^Outpatient^HL70284|000000070000^UBRN|20240115103000|||O^Provider ordered^HL70336|000000070000^UBRN\rPRD|RP^Referring provider^HL70286|JONES^ANNE^^^DR|1 HIGH STREET^^LEEDS^^LS1 1AA^GBR|^^^B86001|0113 123 4567^WPN^PH||G1234567^GMP\rPRD|RT^Referred to provider^HL70286|SMITH^ALAN^^^DR|||||C1234567^GMC\rPID|1||9434765919^^^NHS^NH~RXX1234567^^^RXX^MR||SMITH^JOHN^QUINCY^^MR^^L||19800101|M\rDG1|1||R07.4^Chest pain, unspecified^I10|||W\rOBR|1|000000070000^UBRN||REFLETTER^Referral letter^L|||20240115103000\rOBX|1|ED|REFLETTER^Referral letter^L|1|ERS^AP^PDF^Base64^JVBERi0xLjQK||||||F\rNTE|1|P|Patient prefers morning appointments \\E\\ uses a wheelchair\r";

    #[test]
    fn the_worked_ref_i12_example_is_valid() {
        assert_eq!(validate(&read(REF.as_bytes()).unwrap()), Ok(()));
    }

    #[test]
    fn the_worked_a28_and_ack_examples_are_valid() {
        let a28 = "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000||ADT^A28^ADT_A05|ERSB-A28-2|P|2.5.1|||AL|NE|GBR|UNICODE UTF-8\rEVN|A28|20240115103000\rPID|1||9434765919^^^NHS^NH||SMITH^JOHN^QUINCY^^MR^^L||19800101|M\rPD1|||LEEDS MEDICAL PRACTICE^^^^^NHS^ODS^^^B86001|G1234567^JONES^ANNE^^^DR^^^GMP\rPV1|1|N\r";
        assert_eq!(validate(&read(a28.as_bytes()).unwrap()), Ok(()));
        let ack24 = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240115103002||ACK^I12^ACK|PAS-778800|P|2.4\rMSA|AE|ERSB-000000070000-1|NHS number not traced\rERR|PID^1^3^204&Unknown key identifier&HL70357\r";
        assert_eq!(validate(&read(ack24.as_bytes()).unwrap()), Ok(()));
        let ack251 = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240115103002||ACK^I12^ACK|PAS-778800|P|2.5.1\rMSA|AE|ERSB-000000070000-1\rERR||PID^1^3^1^1|101^Required field missing^HL70357|E\r";
        assert_eq!(validate(&read(ack251.as_bytes()).unwrap()), Ok(()));
        let no_pv1 = a28.replace("PV1|1|N\r", "");
        assert!(validate(&read(no_pv1.as_bytes()).unwrap()).is_err());
    }

    #[test]
    fn obx_without_obr_and_missing_prd_are_reported() {
        let no_obr = REF.replace(
            "OBR|1|000000070000^UBRN||REFLETTER^Referral letter^L|||20240115103000\r",
            "",
        );
        let errors = validate(&read(no_obr.as_bytes()).unwrap()).unwrap_err();
        assert!(errors[0].contains("(OBX): not allowed here"), "{errors:?}");
        let no_prd: String = REF
            .split('\r')
            .filter(|s| !s.starts_with("PRD"))
            .collect::<Vec<_>>()
            .join("\r");
        let errors = validate(&read(no_prd.as_bytes()).unwrap()).unwrap_err();
        assert!(
            errors[0].contains("missing required PROVIDER_CONTACT"),
            "{errors:?}"
        );
    }

    #[test]
    fn sft_only_in_251_and_required_fields_checked() {
        let with_sft = REF.replacen("\rRF1", "\rSFT|X\rRF1", 1);
        assert!(validate(&read(with_sft.as_bytes()).unwrap()).is_err());
        let v251 = with_sft.replacen("|2.4|", "|2.5.1|", 1);
        assert_eq!(validate(&read(v251.as_bytes()).unwrap()), Ok(()));
        let no_ubrn = REF.replace(
            "|O^Outpatient^HL70284|000000070000^UBRN|",
            "|O^Outpatient^HL70284||",
        );
        let errors = validate(&read(no_ubrn.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(
            errors,
            vec!["segment 2 (RF1): required field RF1-6 is empty"]
        );
    }
}
