//! The A008 (referral) and A023 (A&G) worklists: a FHIR [`List`] whose entries reference
//! `ReferralRequest/<ubrn>` or `CommunicationRequest/<ubrn>` and carry one WorkListItem
//! extension with relative sub-extensions (ERS-API.md §5). [`WorklistItem`] is the flat view
//! the poller uses.

use serde::Deserialize;

use super::common::{Extension, Reference};
use super::referral::{List, ListEntry};

/// The provider and referrer worklists of A008 (`eRS-ReferralListSelector-1`) and the A&G
/// list of A023 (`eRS-CommunicationListSelector-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListSelector {
    ReferralsForReview,
    AppointmentSlotIssues,
    RejectedTriageResponse,
    AssessmentReturnedCancelledDna,
    AwaitingBooking,
    LettersOutstanding,
    AdviceAndGuidanceRequests,
}

impl ListSelector {
    /// The code sent in `listType`.
    pub fn code(self) -> &'static str {
        match self {
            ListSelector::ReferralsForReview => "REFERRALS_FOR_REVIEW",
            ListSelector::AppointmentSlotIssues => "APPOINTMENT_SLOT_ISSUES",
            ListSelector::RejectedTriageResponse => "REJECTED_TRIAGE_RESPONSE",
            ListSelector::AssessmentReturnedCancelledDna => "ASSESSMENT_RETURNED_CANCELLED_DNA",
            ListSelector::AwaitingBooking => "AWAITING_BOOKING",
            ListSelector::LettersOutstanding => "LETTERS_OUTSTANDING",
            ListSelector::AdviceAndGuidanceRequests => "ADVICE_AND_GUIDANCE_REQUESTS",
        }
    }

    /// The code system of `listType`.
    pub fn system(self) -> &'static str {
        match self {
            ListSelector::AdviceAndGuidanceRequests => {
                "https://fhir.nhs.uk/STU3/CodeSystem/eRS-CommunicationListSelector-1"
            }
            _ => "https://fhir.nhs.uk/STU3/CodeSystem/eRS-ReferralListSelector-1",
        }
    }

    /// True for the two lists a service provider reads with A008.
    pub fn is_provider_list(self) -> bool {
        matches!(
            self,
            ListSelector::ReferralsForReview | ListSelector::AppointmentSlotIssues
        )
    }
}

impl From<crate::config::WorklistKind> for ListSelector {
    fn from(k: crate::config::WorklistKind) -> Self {
        match k {
            crate::config::WorklistKind::ReferralsForReview => ListSelector::ReferralsForReview,
            crate::config::WorklistKind::AppointmentSlotIssues => {
                ListSelector::AppointmentSlotIssues
            }
        }
    }
}

/// One worklist entry, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorklistItem {
    /// `ReferralRequest` or `CommunicationRequest`.
    pub resource_type: String,
    /// The UBRN.
    pub ubrn: String,
    /// `referralRequestVersion` / `communicationRequestVersion` when the list carries it
    /// (RFR and A&G do; ASI does not).
    pub version: Option<u32>,
    pub priority: Option<String>,
    pub specialty: Option<String>,
    /// The e-RS service id.
    pub service: Option<String>,
    /// ASI `reason`, A&G `category`, RFR `requestContextStatus`.
    pub status: Option<String>,
}

impl List {
    /// The worklist entries, flattened. Entries whose reference is not
    /// `<Type>/<ubrn>` are skipped (they carry nothing the bridge can act on).
    pub fn worklist_items(&self) -> Vec<WorklistItem> {
        self.entry.iter().filter_map(item_of).collect()
    }
}

/// A worklist `List` read for its items only: each entry is flattened into a
/// [`WorklistItem`] as soon as it is parsed and then dropped, and every other element of the
/// list is skipped unbuilt. The same items as [`List::worklist_items`], without the typed
/// tree of the whole list in memory at once (about 10 KB per entry).
#[derive(Debug, Default, Deserialize)]
pub struct WorklistItems {
    #[serde(default)]
    entry: FlattenedEntries,
}

impl WorklistItems {
    pub fn into_items(self) -> Vec<WorklistItem> {
        self.entry.0
    }
}

#[derive(Debug, Default)]
struct FlattenedEntries(Vec<WorklistItem>);

impl<'de> Deserialize<'de> for FlattenedEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = FlattenedEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of worklist entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FlattenedEntries, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(entry) = seq.next_element::<ListEntry>()? {
                    items.extend(item_of(&entry));
                }
                Ok(FlattenedEntries(items))
            }
        }
        deserializer.deserialize_seq(Entries)
    }
}

fn item_of(entry: &ListEntry) -> Option<WorklistItem> {
    let (ty, ubrn) = entry.item.reference.as_deref()?.split_once('/')?;
    let ext: &[Extension] = entry
        .extension
        .iter()
        .find(|e| e.url.ends_with("WorkListItem-1"))
        .map(|e| e.extension.as_slice())
        .unwrap_or_default();
    let sub = |name: &str| ext.iter().find(|e| e.url == name)?.value.as_ref();
    let code = |name: &str| sub(name)?.as_code().map(str::to_string);
    let version = sub("referralRequestVersion")
        .or_else(|| sub("communicationRequestVersion"))
        .and_then(|v| v.as_i64())
        .and_then(|v| u32::try_from(v).ok());
    let service = sub("service")
        .and_then(|v| v.as_reference())
        .and_then(|r: &Reference| r.identifier.as_ref()?.value.clone());
    Some(WorklistItem {
        resource_type: ty.to_string(),
        ubrn: ubrn.to_string(),
        version,
        priority: code("priority"),
        specialty: code("specialty"),
        service,
        status: code("reason")
            .or_else(|| code("category"))
            .or_else(|| code("requestContextStatus")),
    })
}
