//! What changed since the version the PAS has: a REF^I13 ends with a message-level NTE
//! listing the facts that differ between the REF message published for the previous
//! version (from the store) and the new one (priority, e-RS state, appointment, the
//! referred-to service, letters added or removed), so a clerk does not have to diff two
//! messages by eye. The facts are read from the two messages at the fields the mapping put
//! them in (docs/mappings.md), so the note follows the mapping; no IO here.

use std::collections::BTreeMap;

use crate::hl7::{Message, Segment};
use crate::ids::Version;

/// The comparable facts of one REF message.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    priority: String,
    state: String,
    appointment: String,
    service: String,
    /// Attachment id (OBX-4) → title (OBX-3.2), for the letters in the message.
    letters: BTreeMap<String, String>,
}

fn facts(m: &Message) -> Facts {
    let rf1 = m.segment("RF1");
    let rf1 = |f, c| rf1.map(|s| s.comp(f, c).to_string()).unwrap_or_default();
    let priority = match rf1(2, 4) {
        p if p.is_empty() => rf1(2, 1),
        p => p,
    };
    let appointment = m
        .segment("PV2")
        .map(|s| s.comp(8, 1).to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "none".to_string());
    let service = m
        .segments_named("PRD")
        .find(|p| p.comp(1, 1) == "RT")
        .map(|p| p.comp(7, 1).to_string())
        .unwrap_or_default();
    let letters = m
        .segments_named("OBX")
        .filter(|o| matches!(o.comp(2, 1), "ED" | "RP"))
        .map(|o| (o.comp(4, 1).to_string(), o.comp(3, 2).to_string()))
        .collect();
    Facts {
        priority,
        state: rf1(1, 4),
        appointment,
        service,
        letters,
    }
}

/// The differences between the message the PAS has and the new one, one phrase each.
pub fn differences(previous: &Message, current: &Message) -> Vec<String> {
    let (a, b) = (facts(previous), facts(current));
    let mut out = Vec::new();
    for (name, was, now) in [
        ("priority", &a.priority, &b.priority),
        ("e-RS state", &a.state, &b.state),
        ("appointment", &a.appointment, &b.appointment),
        ("referred-to service", &a.service, &b.service),
    ] {
        if was != now {
            out.push(format!("{name} {was} -> {now}"));
        }
    }
    let listed = |ids: Vec<(&String, &String)>| {
        ids.iter()
            .map(|(id, title)| format!("{title} ({id})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<_> = b
        .letters
        .iter()
        .filter(|(id, _)| !a.letters.contains_key(*id))
        .collect();
    let removed: Vec<_> = a
        .letters
        .iter()
        .filter(|(id, _)| !b.letters.contains_key(*id))
        .collect();
    if !added.is_empty() {
        out.push(format!("letters added: {}", listed(added)));
    }
    if !removed.is_empty() {
        out.push(format!(
            "letters no longer in the message: {}",
            listed(removed)
        ));
    }
    out
}

/// The NTE appended to a REF^I13: what changed since `previous_version`, coded `CHANGES` in
/// NTE-4.4 so a PAS can find it.
pub fn note(previous_version: Version, differences: &[String]) -> Segment {
    let text = if differences.is_empty() {
        format!(
            "Changed in e-RS since version {previous_version}; none of the facts this message \
             carries changed (priority, state, appointment, service, letters)"
        )
    } else {
        format!(
            "Changed in e-RS since version {previous_version}: {}",
            differences.join("; ")
        )
    };
    let mut nte = Segment::new("NTE");
    nte.set(2, 1, 1, 1, "O");
    nte.set(3, 1, 1, 1, text);
    for (comp, value) in [
        "RE",
        "Remark",
        "HL70364",
        "CHANGES",
        "Changes since the last version",
        "99ERS",
    ]
    .into_iter()
    .enumerate()
    {
        nte.set(4, 1, comp + 1, 1, value);
    }
    nte
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::read;

    fn msg(text: &str) -> Message {
        read(text.replace('\n', "\r").as_bytes()).unwrap()
    }

    const BEFORE: &str =
        "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000||REF^I12^REF_I12|1|P|2.5.1\n\
        RF1|P^Pending^HL70283^BOOKED^Booked^99ERS|R^Routine^HL70280^ROUTINE^Routine^99ERS\n\
        PRD|RT^Referred to provider^HL70286|||||||21012^ERS_SERVICE\n\
        OBR|1|000000070001-1^UBRN\n\
        OBX|1|ED|REFERRER^letter.pdf^99ERS|80000|ERS^AP^PDF^Base64^AAAA\n\
        PV1|1|O\n\
        PV2||||||||20210613123000+0000\n";

    #[test]
    fn lists_each_changed_fact() {
        let after = BEFORE
            .replace("R^Routine^HL70280^ROUTINE", "W^Two week wait^HL70280^TWO_WEEK_WAIT")
            .replace("PV2||||||||20210613123000+0000\n", "")
            .replace(
                "PV1|1|O",
                "OBR|2|000000070001-2^UBRN\nOBX|1|RP|REFERRER^second.pdf^99ERS|80001|Binary/x^ERS^AP^PDF\nPV1|1|O",
            );
        let d = differences(&msg(BEFORE), &msg(&after));
        assert_eq!(
            d,
            [
                "priority ROUTINE -> TWO_WEEK_WAIT",
                "appointment 20210613123000+0000 -> none",
                "letters added: second.pdf (80001)",
            ]
        );
        let nte = note(Version::new(5), &d);
        assert_eq!(nte.get(4, 1, 4, 1), "CHANGES");
        assert!(nte
            .comp(3, 1)
            .starts_with("Changed in e-RS since version 5: priority"));
    }

    #[test]
    fn says_so_when_no_carried_fact_changed() {
        let d = differences(&msg(BEFORE), &msg(BEFORE));
        assert!(d.is_empty());
        assert!(note(Version::new(5), &d)
            .comp(3, 1)
            .contains("none of the facts this message carries changed"));
    }
}
