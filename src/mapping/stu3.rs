//! A typo check for mapping expressions: the elements an STU3 ReferralRequest can have,
//! and the members an outbound mapping reads from the referral itself that are none of
//! them (`subjekt.identifier` always renders empty, silently). `ers-bridge validate` warns
//! about each one. Only paths that start at the referral are checked (a field outside a
//! `for_each`, a `for_each` itself, and `%resource....` anywhere); inside a loop or a
//! `where(...)` the focus is another element, which this check does not follow.

use super::compile::{CompiledMapping, Source};
use super::path::Expr;

/// ReferralRequest's elements in FHIR STU3 (with those of Resource and DomainResource, and
/// JSON's `resourceType`).
pub const REFERRAL_REQUEST: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "identifier",
    "definition",
    "basedOn",
    "replaces",
    "groupIdentifier",
    "status",
    "intent",
    "type",
    "priority",
    "serviceRequested",
    "subject",
    "context",
    "occurrenceDateTime",
    "occurrencePeriod",
    "authoredOn",
    "requester",
    "specialty",
    "recipient",
    "reasonCode",
    "reasonReference",
    "description",
    "supportingInfo",
    "note",
    "relevantHistory",
];

/// Each `(field, member)` where the mapping reads `member` from the referral and a
/// ReferralRequest has no such element.
pub fn unknown_members(m: &CompiledMapping) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for seg in &m.segments {
        let in_loop = seg.for_each.is_some();
        let mut note = |field: &str, e: &Expr, at_root: bool| {
            let mut names = Vec::new();
            walk(e, at_root, &mut names);
            for n in names {
                let item = (field.to_string(), n);
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        };
        if let Some((_, e)) = &seg.for_each {
            note(&format!("{} for_each", seg.id), e, true);
        }
        if let Some(e) = &seg.when {
            note(&format!("{} when", seg.id), e, !in_loop);
        }
        for set in &seg.sets {
            if let Source::Expr(e) = &set.source {
                let field = if set.name == set.label {
                    set.label.clone()
                } else {
                    format!("{} ({})", set.label, set.name)
                };
                note(&field, e, !in_loop);
            }
        }
    }
    out
}

/// Collects the unknown members `e` reads from the referral; `at_root` when its implicit
/// focus is the referral.
fn walk(e: &Expr, at_root: bool, out: &mut Vec<String>) {
    match e {
        Expr::Member(base, name) => {
            let from_referral = match &**base {
                Expr::This => at_root,
                Expr::Var(v) => v == "resource",
                _ => false,
            };
            if from_referral && !REFERRAL_REQUEST.contains(&name.as_str()) {
                out.push(name.clone());
            }
            walk(base, at_root, out);
        }
        Expr::Index(base, _) => walk(base, at_root, out),
        // A method's arguments are read with its items as their focus.
        Expr::Method(base, _, args) => {
            walk(base, at_root, out);
            args.iter().for_each(|a| walk(a, false, out));
        }
        // A mapping function's arguments share the caller's focus.
        Expr::Global(_, args) => args.iter().for_each(|a| walk(a, at_root, out)),
        Expr::Eq(a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
            walk(a, at_root, out);
            walk(b, at_root, out);
        }
        Expr::Lit(_) | Expr::This | Expr::Var(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_members;
    use crate::mapping::compile_str;

    #[test]
    fn a_typo_at_the_referral_is_found_and_nothing_else() {
        let text = "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\n\
            [[segment]]\nid = \"MSH\"\n[[segment]]\nid = \"PID\"\n\
            [[segment.set]]\nat = \"3.1\"\nname = \"NHS number\"\nexpr = \"subjekt.identifier.where(sytem = 'x').value\"\n\
            [[segment.set]]\nat = \"5\"\nexpr = \"default(authoredOn, %resource.autoredOn)\"\n\
            [[segment]]\nid = \"OBX\"\nfor_each = \"contained.where(resourceType = 'DocumentReference')\"\n\
            [[segment.set]]\nat = \"2\"\nexpr = \"content.attachment.contentType\"\n";
        let m = compile_str("t.toml", text, std::path::Path::new(".")).unwrap();
        assert_eq!(
            unknown_members(&m),
            [
                ("PID-3.1 (NHS number)".to_string(), "subjekt".to_string()),
                ("PID-5".to_string(), "autoredOn".to_string()),
            ]
        );
        // The shipped mappings read nothing a ReferralRequest lacks.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        for f in [
            "ref_i12.v24.toml",
            "ref_i12.v251.toml",
            "ref_i13.v24.toml",
            "ref_i14.v24.toml",
        ] {
            let m = crate::mapping::compile_file(&root.join(f)).unwrap();
            assert_eq!(unknown_members(&m), Vec::<(String, String)>::new(), "{f}");
        }
    }
}
