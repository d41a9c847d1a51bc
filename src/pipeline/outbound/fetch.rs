//! Fetching what a referral version's message needs besides the referral itself: the bytes
//! of its AVAILABLE attachments (A042, falling back to A006), the clinical information PDF
//! (A007) when configured, and the attachments of related referrals when configured.
//!
//! The referral is read through the typed narrow view [`ReferralFacts`] (no hand-walked
//! JSON), once per new version, into the owned [`Facts`]; the JSON is only touched to add
//! what the mapping renders besides A005's own content ([`enrich`]): the extra documents
//! and the A004 display of a specialty e-RS sends as a bare code.
//! Attachments e-RS marks PENDING (or that answer `PENDING` when downloaded) are reported so
//! the caller can wait for a later poll; THREATS_FOUND and VALIDATION_FAILED ones are not
//! fetched and the mapping reports them as not available.

use serde_json::Value;

use super::super::PipelineError;
use crate::ers::{binary_id_of, clinical_info_path, ErsClient, ErsError, RefDataCache};
use crate::fhir::ReferralFacts;
use crate::ids::Ubrn;
use crate::mapping::{AttachmentErrors, Attachments};

/// The `attachment_error` of an attachment e-RS was still scanning when the referral was
/// published (after `pending_attachment_max_wait`).
const SCANNING: &str = "e-RS was still scanning it for threats (PENDING)";

/// The attachment key under which the clinical information PDF is handed to the mapping.
pub const CLINICAL_INFO_KEY: &str = "clinical-info";

/// What was fetched for one referral version.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Bytes by attachment id, for the mapping.
    pub attachments: Attachments,
    /// Attachment ids e-RS has not made available yet.
    pub pending: Vec<String>,
    /// Why an attachment (or the clinical information PDF, under [`CLINICAL_INFO_KEY`]) that
    /// should have been downloaded was not (its download failed for good, or e-RS still
    /// scans it), by attachment id: the mapping's `attachment_error`.
    pub errors: AttachmentErrors,
    /// DocumentReferences to add to the referral the mapping sees: the clinical information
    /// PDF and related referrals' documents (see [`enrich`]).
    pub extra_documents: Vec<Value>,
    /// The A004 display of the specialty, when the referral gives only its code.
    pub specialty_display: Option<String>,
}

/// One attachment of a referral: its id and e-RS availability status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// `attachment.id`: the key the mapping looks the bytes up by.
    pub id: String,
    /// The id to download (A042/A006): the last part of `attachment.url`
    /// (`Binary/<id>`), else `attachment.id`.
    pub binary_id: String,
    /// `AVAILABLE`, `PENDING`, `THREATS_FOUND`, `VALIDATION_FAILED`; `None` when absent.
    pub status: Option<String>,
}

/// What the pipeline decides on for one referral version, read once from its JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Cancelled (`status` or the e-RS state `CANCELLED_REFERRAL`).
    pub cancelled: bool,
    /// The attachments of the contained DocumentReferences.
    pub attachments: Vec<AttachmentRef>,
    /// Related referrals (`supportingInfo` → `ReferralRequest/<ubrn>`), as given.
    pub related: Vec<String>,
    /// The specialty code no display names (see [`ReferralFacts::specialty_without_display`]).
    pub specialty_to_name: Option<String>,
    /// The clinically relevant facts, as stored with the version once published
    /// ([`crate::fhir::relevant::RelevantFacts`]).
    pub relevant: String,
}

/// Reads the facts of an A005 body; a body that does not fit the e-RS structure is a bad
/// referral.
pub fn facts(ubrn: &Ubrn, json: &Value) -> Result<Facts, PipelineError> {
    let view = ReferralFacts::from_value(json).map_err(|e| PipelineError::BadReferral {
        ubrn: ubrn.clone(),
        reason: format!("not an e-RS ReferralRequest: {e}"),
    })?;
    let attachments = view
        .attachments()
        .filter_map(|a| {
            let id = a.id?;
            let binary_id = a.url.and_then(binary_id_of).unwrap_or(id);
            Some(AttachmentRef {
                id: id.to_string(),
                binary_id: binary_id.to_string(),
                status: a.availability.map(str::to_string),
            })
        })
        .collect();
    Ok(Facts {
        cancelled: view.is_cancelled(),
        attachments,
        related: view.related_ubrns().map(str::to_string).collect(),
        specialty_to_name: view.specialty_without_display().map(str::to_string),
        relevant: crate::fhir::relevant::RelevantFacts::of(&view).to_stored(),
    })
}

/// The contained DocumentReferences of a related referral, as a `{"contained": [...]}`
/// object whose resource and attachment ids are prefixed `<related ubrn>-`.
fn related_documents(related: &Ubrn, referral: &Value) -> Value {
    let docs: Vec<Value> = referral
        .get("contained")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("DocumentReference"))
        .map(|d| {
            let mut d = d.clone();
            if let Some(id) = d.get("id").and_then(Value::as_str) {
                d["id"] = Value::String(format!("{related}-{id}"));
            }
            if let Some(content) = d.get_mut("content").and_then(Value::as_array_mut) {
                for c in content {
                    if let Some(id) = c.pointer("/attachment/id").and_then(Value::as_str) {
                        c["attachment"]["id"] = Value::String(format!("{related}-{id}"));
                    }
                }
            }
            d
        })
        .collect();
    serde_json::json!({ "contained": docs })
}

/// A DocumentReference standing for the clinical information PDF (A007), whose bytes are in
/// the attachments under [`CLINICAL_INFO_KEY`].
fn clinical_info_document(ubrn: &Ubrn, size: usize) -> Value {
    serde_json::json!({
        "resourceType": "DocumentReference",
        "id": CLINICAL_INFO_KEY,
        "status": "current",
        "type": { "coding": [{ "code": "CLINICAL_INFORMATION", "display": "Clinical Information Summary" }] },
        "description": "e-RS clinical information summary (A007)",
        "content": [{ "attachment": {
            "id": CLINICAL_INFO_KEY,
            "contentType": "application/pdf",
            "size": size,
            "title": format!("{ubrn}_Clinical_Information_Summary.pdf"),
            "url": clinical_info_path(ubrn),
        }}],
    })
}

/// The referral as the mapping sees it: the A005 resource plus the extra documents, each
/// added to `contained` and referenced from `supportingInfo` (`#<id>`), so the mappings
/// render them like the referral's own attachments, and the specialty's A004 display set
/// where e-RS gave only the code (the referral's `specialty`, else the search criteria's).
/// Returns `None` when there is nothing to add.
pub fn enrich(referral: &Value, extra: &[Value], specialty_display: Option<&str>) -> Option<Value> {
    if extra.is_empty() && specialty_display.is_none() {
        return None;
    }
    let mut r = referral.clone();
    if let Some(display) = specialty_display {
        name_specialty(&mut r, display);
    }
    let obj = r.as_object_mut()?;
    for doc in extra {
        let Some(id) = doc.get("id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        obj.entry("contained")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()?
            .push(doc.clone());
        obj.entry("supportingInfo")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()?
            .push(serde_json::json!({ "reference": format!("#{id}") }));
    }
    Some(r)
}

/// Sets `display` on the specialty coding that has none: `specialty.coding[0]`, else the
/// search criteria's `specialty` parameter.
fn name_specialty(referral: &mut Value, display: &str) {
    let own = referral.pointer_mut("/specialty/coding/0");
    let coding = match own {
        Some(c) => Some(c),
        None => referral
            .get_mut("contained")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Parameters"))
            .filter_map(|r| r.get_mut("parameter").and_then(Value::as_array_mut))
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some("specialty"))
            .and_then(|p| p.get_mut("valueCoding")),
    };
    if let Some(Value::Object(c)) = coding {
        c.entry("display")
            .or_insert_with(|| Value::String(display.to_string()));
    }
}

/// The A004 display of a specialty code. `None` when the look-up fails or does not know the
/// code: the mapping then shows the code, and the referral is not held back for a label.
pub async fn specialty_display(
    refdata: &RefDataCache,
    ers: &ErsClient,
    ubrn: &Ubrn,
    code: &str,
) -> Option<String> {
    match refdata.get(ers, "SPECIALTY").await {
        Ok(cs) => cs.concept(code).and_then(|c| c.display.clone()),
        Err(e) => {
            tracing::debug!(ubrn = %ubrn, error = %e, "a004 specialty display not available, the code is shown");
            None
        }
    }
}

/// What to fetch besides the attachments.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    pub clinical_info: bool,
    /// The A007 PDF only when nothing else gives the message a letter.
    pub clinical_info_when_no_letter: bool,
    pub related_attachments: bool,
}

/// Fetches the attachments (and, as configured, the clinical information PDF and related
/// referrals' attachments) of one referral version. A retryable failure fails the whole
/// fetch so the referral is tried again later; a permanent one leaves that file out.
pub async fn fetch_documents(
    ers: &ErsClient,
    ubrn: &Ubrn,
    referral: &Facts,
    opts: FetchOptions,
) -> Result<Fetched, PipelineError> {
    let mut out = Fetched::default();
    fetch_attachments(ers, ubrn, &referral.attachments, &mut out).await?;
    if opts.related_attachments {
        for related in &referral.related {
            let related = match Ubrn::parse(related) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(ubrn = %ubrn, error = %e, "related referral id is not a ubrn");
                    continue;
                }
            };
            match ers.referral_json(&related, None).await {
                Ok(r) => {
                    // A related referral's documents are extras: a pending one does not hold
                    // this referral back, and one that does not read is left out. Their ids
                    // are prefixed with the related UBRN, as attachment ids are only unique
                    // within one referral.
                    let related_facts = match facts(&related, &r.resource) {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::warn!(ubrn = %ubrn, related = %related, error = %e, "related referral not readable");
                            continue;
                        }
                    };
                    let refs: Vec<_> = related_facts
                        .attachments
                        .into_iter()
                        .map(|a| AttachmentRef {
                            id: format!("{related}-{}", a.id),
                            ..a
                        })
                        .collect();
                    let mut extra = Fetched::default();
                    fetch_attachments(ers, ubrn, &refs, &mut extra).await?;
                    out.attachments.extend(extra.attachments);
                    let docs = related_documents(&related, &r.resource);
                    if let Some(list) = docs.get("contained").and_then(Value::as_array) {
                        out.extra_documents.extend(list.iter().cloned());
                    }
                }
                Err(e) if e.is_retryable() => {
                    return Err(PipelineError::Ers {
                        ubrn: related,
                        source: e,
                    })
                }
                Err(e) => {
                    tracing::warn!(ubrn = %ubrn, related = %related, error = %e, "related referral not readable");
                }
            }
        }
    }
    // No letter to send (none attached, none available, none downloadable) and none still
    // being scanned: the clinical summary stands in for it.
    let no_letter = out.attachments.is_empty() && out.pending.is_empty();
    if opts.clinical_info || (opts.clinical_info_when_no_letter && no_letter) {
        match ers.clinical_info(ubrn).await {
            Ok(pdf) => {
                out.attachments
                    .insert(CLINICAL_INFO_KEY.to_string(), pdf.bytes.to_vec());
                out.extra_documents
                    .push(clinical_info_document(ubrn, pdf.bytes.len()));
            }
            Err(e) if e.is_retryable() => return Err(PipelineError::ers(ubrn)(e)),
            Err(e) => {
                tracing::warn!(ubrn = %ubrn, error = %e, "clinical information not available");
                out.errors
                    .insert(CLINICAL_INFO_KEY.to_string(), e.to_string());
            }
        }
    }
    Ok(out)
}

async fn fetch_attachments(
    ers: &ErsClient,
    ubrn: &Ubrn,
    refs: &[AttachmentRef],
    out: &mut Fetched,
) -> Result<(), PipelineError> {
    for a in refs {
        match a.status.as_deref() {
            None | Some("AVAILABLE") => {}
            Some("PENDING") => {
                out.pending.push(a.id.clone());
                out.errors.insert(a.id.clone(), SCANNING.into());
                continue;
            }
            // Not available in e-RS: the mapping reads the status from the FHIR itself.
            Some(_) => continue,
        }
        match download(ers, &a.binary_id).await {
            Ok(bytes) => {
                out.attachments.insert(a.id.clone(), bytes);
            }
            Err(e) if is_pending(&e) => {
                out.pending.push(a.id.clone());
                out.errors.insert(a.id.clone(), SCANNING.into());
            }
            Err(e) if e.is_retryable() => return Err(PipelineError::ers(ubrn)(e)),
            Err(e) => {
                tracing::warn!(ubrn = %ubrn, attachment = %a.id, error = %e, "attachment not downloadable");
                out.errors.insert(a.id.clone(), e.to_string());
            }
        }
    }
    Ok(())
}

/// A042, then A006 when A042 fails for good (e.g. not offered by this deployment); not
/// when the file is over the client's cap (A006 would send the same bytes).
async fn download(ers: &ErsClient, id: &str) -> Result<Vec<u8>, ErsError> {
    match ers.attachment(id).await {
        Ok(b) => Ok(b.bytes.to_vec()),
        Err(e) if e.is_retryable() || is_pending(&e) || matches!(e, ErsError::TooLarge { .. }) => {
            Err(e)
        }
        Err(e) => {
            tracing::debug!(attachment = %id, error = %e, "a042 failed, trying a006");
            ers.attachment_stu3(id).await.map(|b| b.bytes.to_vec())
        }
    }
}

/// e-RS answers 422 with the code `PENDING` while it still scans an attachment.
fn is_pending(e: &ErsError) -> bool {
    e.ers_code() == Some("PENDING")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Facts {
        let path = format!(
            "{}/samples/fhir/referrals/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        facts(&Ubrn::parse("000000070000").unwrap(), &json).unwrap()
    }

    #[test]
    fn reads_attachment_statuses() {
        let refs = sample("with-unavailable-attachments").attachments;
        let statuses: Vec<_> = refs
            .iter()
            .map(|r| (r.id.as_str(), r.status.as_deref()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("80000", Some("PENDING")),
                ("80001", Some("THREATS_FOUND")),
                ("80002", Some("VALIDATION_FAILED"))
            ]
        );
    }

    #[test]
    fn downloads_by_the_url_binary_id() {
        let refs = sample("booked-dbs").attachments;
        assert_eq!(refs[0].id, "80000");
        assert_eq!(refs[0].binary_id, "719f6045-e791-4029-8e0f-1201c02b0a55");
    }

    #[test]
    fn cancelled_by_status_or_state() {
        assert!(!sample("unbooked").cancelled);
        let ubrn = Ubrn::parse("000000070000").unwrap();
        let cancelled = serde_json::json!({"id": "000000070000", "status": "cancelled"});
        assert!(facts(&ubrn, &cancelled).unwrap().cancelled);
    }

    #[test]
    fn related_ubrns_come_from_supporting_info() {
        assert_eq!(sample("with-related-referral").related, ["000000070004"]);
    }

    #[test]
    fn enrich_names_the_bare_specialty_code_and_keeps_a_given_display() {
        let path = format!(
            "{}/samples/fhir/referrals/unbooked.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let r = enrich(&json, &[], Some("Cardiology")).unwrap();
        let params = r["contained"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resourceType"] == "Parameters")
            .unwrap();
        let specialty = params["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "specialty")
            .unwrap();
        assert_eq!(specialty["valueCoding"]["display"], "Cardiology");
        assert_eq!(specialty["valueCoding"]["code"], "CARDIOLOGY");
        assert!(enrich(&json, &[], None).is_none());
        let own = serde_json::json!({"specialty": {"coding": [{"code": "X", "display": "Given"}]}});
        assert_eq!(
            enrich(&own, &[], Some("A004"))
                .unwrap()
                .pointer("/specialty/coding/0/display")
                .unwrap(),
            "Given"
        );
    }

    #[test]
    fn a_body_that_does_not_fit_is_a_bad_referral_naming_the_ubrn() {
        let ubrn = Ubrn::parse("000000070000").unwrap();
        let bad = serde_json::json!({"contained": "not a list"});
        let e = facts(&ubrn, &bad).unwrap_err();
        assert!(matches!(e, PipelineError::BadReferral { .. }), "{e}");
        assert!(e.to_string().contains("000000070000"), "{e}");
    }
}
