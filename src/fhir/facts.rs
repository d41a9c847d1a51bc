//! [`ReferralFacts`]: the few facts of an A005 referral that the outbound pipeline decides
//! on (cancelled or not, the attachments with their availability, the related referrals),
//! read from the parsed JSON without copying.
//!
//! The full typed [`ReferralRequest`](super::ReferralRequest) reads every contained
//! resource, extension and coding; the pipeline reads every new referral version and needs
//! three facts of it, so it reads this narrow view instead (BENCHMARKS.md, issue 9: the full
//! view cost about 3% of the bridge's CPU per referral). Both are serde structs over the
//! same e-RS structure definitions and share the extension names in [`super::referral`];
//! no code walks `serde_json::Value` by hand. Strings are borrowed from the
//! `serde_json::Value` they are read from, so build one with [`ReferralFacts::from_value`].

use serde::Deserialize;

use super::referral::{EXT_AVAILABILITY, EXT_PRIORITY, EXT_REFERRAL_STATE};

/// The extension e-RS updates when the referrer changes the clinical information.
pub const EXT_CLINICAL_INFO_UPDATED: &str = "Extension-eRS-ClinicalInfoLastUpdated-1";

/// The facts of a referral the outbound pipeline needs, borrowed from its JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralFacts<'a> {
    #[serde(borrow, default)]
    status: Option<&'a str>,
    #[serde(borrow, default)]
    extension: Vec<FactExtension<'a>>,
    #[serde(borrow, default)]
    contained: Vec<FactResource<'a>>,
    #[serde(borrow, default)]
    supporting_info: Vec<FactReference<'a>>,
    #[serde(borrow, default)]
    specialty: Option<FactConcept<'a>>,
}

/// One attachment of a contained DocumentReference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentFact<'a> {
    /// `attachment.id`.
    pub id: Option<&'a str>,
    /// `attachment.url` (`Binary/<id>`).
    pub url: Option<&'a str>,
    /// The e-RS availability status (`AVAILABLE`, `PENDING`, ...), `None` when absent.
    pub availability: Option<&'a str>,
}

impl<'a> ReferralFacts<'a> {
    /// Reads the facts of an A005 body; an error names the element that does not fit.
    pub fn from_value(json: &'a serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(json)
    }

    /// Whether the referral is cancelled (`status` or the e-RS state `CANCELLED_REFERRAL`),
    /// as [`ReferralRequest::is_cancelled`](super::ReferralRequest::is_cancelled).
    pub fn is_cancelled(&self) -> bool {
        self.status == Some("cancelled") || self.state() == Some("CANCELLED_REFERRAL")
    }

    /// The referral state code (`BOOKED`, `CANCELLED_REFERRAL`, ...).
    pub fn state(&self) -> Option<&'a str> {
        find(&self.extension, EXT_REFERRAL_STATE)?
            .extension
            .iter()
            .find(|e| e.url == "state")?
            .code()
    }

    /// The state's `reason` code (e.g. a review outcome), as
    /// [`ReferralRequest::state_reason`](super::ReferralRequest::state_reason).
    pub fn state_reason(&self) -> Option<&'a str> {
        find(&self.extension, EXT_REFERRAL_STATE)?
            .extension
            .iter()
            .find(|e| e.url == "reason")?
            .code()
    }

    /// The priority code (`ROUTINE`, `URGENT`, `TWO_WEEK_WAIT`).
    pub fn priority(&self) -> Option<&'a str> {
        find(&self.extension, EXT_PRIORITY)?.code()
    }

    /// When the referrer last changed the clinical information (absent until they do).
    pub fn clinical_info_updated(&self) -> Option<&'a str> {
        find(&self.extension, EXT_CLINICAL_INFO_UPDATED)?.value_date_time
    }

    /// The contained booked appointment's id, start and status.
    pub fn appointment(&self) -> Option<(Option<&'a str>, Option<&'a str>, Option<&'a str>)> {
        self.contained
            .iter()
            .find(|r| r.resource_type == "Appointment")
            .map(|r| (r.id, r.start, r.status))
    }

    /// The attachments of the contained DocumentReferences, in order.
    pub fn attachments(&self) -> impl Iterator<Item = AttachmentFact<'a>> + '_ {
        self.contained
            .iter()
            .filter(|r| r.resource_type == "DocumentReference")
            .flat_map(|r| r.content.iter())
            .map(|c| AttachmentFact {
                id: c.attachment.id,
                url: c.attachment.url,
                availability: find(&c.attachment.extension, EXT_AVAILABILITY)
                    .and_then(FactExtension::code),
            })
    }

    /// The specialty code when no display for it is in the referral: the referral's own
    /// `specialty`, else the service search criteria's (`Parameters` `specialty`), which
    /// e-RS sends as a bare code. The pipeline names it from A004.
    pub fn specialty_without_display(&self) -> Option<&'a str> {
        if let Some(c) = self.specialty.as_ref().and_then(|s| s.coding.first()) {
            return c.display.is_none().then_some(c.code).flatten();
        }
        let c = self
            .contained
            .iter()
            .filter(|r| r.resource_type == "Parameters")
            .flat_map(|r| r.parameter.iter())
            .find(|p| p.name == Some("specialty"))?
            .value_coding
            .as_ref()?;
        c.display.is_none().then_some(c.code).flatten()
    }

    /// UBRNs of related referrals (`supportingInfo` of the form `ReferralRequest/<ubrn>`).
    pub fn related_ubrns(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.supporting_info
            .iter()
            .filter_map(|r| r.reference?.strip_prefix("ReferralRequest/"))
    }
}

fn find<'e, 'a>(extensions: &'e [FactExtension<'a>], name: &str) -> Option<&'e FactExtension<'a>> {
    extensions.iter().find(|e| e.url.ends_with(name))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FactExtension<'a> {
    #[serde(borrow)]
    url: &'a str,
    #[serde(borrow, default)]
    extension: Vec<FactExtension<'a>>,
    #[serde(borrow, default)]
    value_coding: Option<FactCoding<'a>>,
    #[serde(borrow, default)]
    value_codeable_concept: Option<FactConcept<'a>>,
    #[serde(borrow, default)]
    value_code: Option<&'a str>,
    #[serde(borrow, default)]
    value_date_time: Option<&'a str>,
}

impl<'a> FactExtension<'a> {
    /// The code of a `valueCoding`, `valueCodeableConcept` (first coding) or `valueCode`,
    /// as [`Value::as_code`](super::Value::as_code).
    fn code(&self) -> Option<&'a str> {
        if let Some(c) = &self.value_coding {
            return c.code;
        }
        if let Some(cc) = &self.value_codeable_concept {
            return cc.coding.first()?.code;
        }
        self.value_code
    }
}

#[derive(Debug, Deserialize)]
struct FactCoding<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
    #[serde(borrow, default)]
    display: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct FactConcept<'a> {
    #[serde(borrow, default)]
    coding: Vec<FactCoding<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FactResource<'a> {
    #[serde(borrow, default)]
    resource_type: &'a str,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    start: Option<&'a str>,
    #[serde(borrow, default)]
    status: Option<&'a str>,
    #[serde(borrow, default)]
    content: Vec<FactContent<'a>>,
    #[serde(borrow, default)]
    parameter: Vec<FactParameter<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FactParameter<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
    #[serde(borrow, default)]
    value_coding: Option<FactCoding<'a>>,
}

#[derive(Debug, Deserialize)]
struct FactContent<'a> {
    #[serde(borrow, default)]
    attachment: FactAttachment<'a>,
}

#[derive(Debug, Default, Deserialize)]
struct FactAttachment<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    url: Option<&'a str>,
    #[serde(borrow, default)]
    extension: Vec<FactExtension<'a>>,
}

#[derive(Debug, Deserialize)]
struct FactReference<'a> {
    #[serde(borrow, default)]
    reference: Option<&'a str>,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fhir::ReferralRequest;

    const SAMPLES: [&str; 9] = [
        "awaiting-triage",
        "booked-dbs",
        "booked-ibs",
        "converted-from-ag",
        "deferred-to-provider",
        "unbooked",
        "with-additional-requirements",
        "with-related-referral",
        "with-unavailable-attachments",
    ];

    /// A sample referral from `samples/fhir/referrals/` (also read by `relevant.rs`).
    pub(in crate::fhir) fn sample(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/samples/fhir/referrals/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The narrow view and the full typed reader agree on every sample referral.
    #[test]
    fn agrees_with_the_full_typed_reader_on_every_sample() {
        for name in SAMPLES {
            let json = sample(name);
            let facts = ReferralFacts::from_value(&json).unwrap();
            let full = ReferralRequest::deserialize(&json).unwrap();
            assert_eq!(facts.is_cancelled(), full.is_cancelled(), "{name}");
            assert_eq!(facts.state(), full.state().map(|c| c.code()), "{name}");
            assert_eq!(
                facts.related_ubrns().collect::<Vec<_>>(),
                full.related_ubrns(),
                "{name}"
            );
            let from_full: Vec<_> = full
                .attachments()
                .flat_map(|d| d.content.iter())
                .map(|c| AttachmentFact {
                    id: c.attachment.id.as_deref(),
                    url: c.attachment.url.as_deref(),
                    availability: c.attachment.availability(),
                })
                .collect();
            assert_eq!(facts.attachments().collect::<Vec<_>>(), from_full, "{name}");
        }
    }

    #[test]
    fn cancelled_by_status_or_by_state() {
        let by_status = serde_json::json!({"status": "cancelled"});
        assert!(ReferralFacts::from_value(&by_status)
            .unwrap()
            .is_cancelled());
        let by_state = serde_json::json!({"extension": [{
            "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-eRS-ReferralState-1",
            "extension": [{"url": "state", "valueCoding": {"code": "CANCELLED_REFERRAL"}}]
        }]});
        assert!(ReferralFacts::from_value(&by_state).unwrap().is_cancelled());
        let active = serde_json::json!({"status": "active"});
        assert!(!ReferralFacts::from_value(&active).unwrap().is_cancelled());
    }

    #[test]
    fn the_specialty_to_name_is_the_search_criteria_code_when_nothing_names_it() {
        let names = |name: &str| {
            let json = sample(name);
            let facts = ReferralFacts::from_value(&json).unwrap();
            facts.specialty_without_display().map(str::to_string)
        };
        // unbooked carries only the search criteria's bare code.
        assert_eq!(names("unbooked").as_deref(), Some("CARDIOLOGY"));
        // booked-dbs's search criteria coding has a display.
        assert_eq!(names("booked-dbs"), None);
        let own = serde_json::json!({"specialty": {"coding": [{"code": "UROLOGY"}]}});
        let facts = ReferralFacts::from_value(&own).unwrap();
        assert_eq!(facts.specialty_without_display(), Some("UROLOGY"));
        let named = serde_json::json!({"specialty": {"coding": [{"code": "UROLOGY", "display": "Urology"}]}});
        let facts = ReferralFacts::from_value(&named).unwrap();
        assert_eq!(facts.specialty_without_display(), None);
    }

    #[test]
    fn a_misshapen_element_is_named() {
        let bad = serde_json::json!({"supportingInfo": {"reference": "x"}});
        let e = ReferralFacts::from_value(&bad).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
    }
}
