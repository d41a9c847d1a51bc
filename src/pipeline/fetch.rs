//! Fetching what a referral version's message needs besides the referral itself: the bytes
//! of its AVAILABLE attachments (A042, falling back to A006), the clinical information PDF
//! (A007) when configured, and the attachments of related referrals when configured.
//!
//! Attachments e-RS marks PENDING (or that answer `PENDING` when downloaded) are reported so
//! the caller can wait for a later poll; THREATS_FOUND and VALIDATION_FAILED ones are not
//! fetched and the mapping reports them as not available.

use serde_json::Value;

use super::PipelineError;
use crate::ers::{ErsClient, ErsError};
use crate::mapping::Attachments;

/// The attachment key under which the clinical information PDF is handed to the mapping.
pub const CLINICAL_INFO_KEY: &str = "clinical-info";

const AVAILABILITY_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-eRS-AvailabilityStatus-1";

/// What was fetched for one referral version.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Bytes by attachment id, for the mapping.
    pub attachments: Attachments,
    /// Attachment ids e-RS has not made available yet.
    pub pending: Vec<String>,
    /// Attachment ids left out, with the reason (not available, download refused).
    pub unavailable: Vec<(String, String)>,
    /// DocumentReferences to add to the referral the mapping sees: the clinical information
    /// PDF and related referrals' documents (see [`enrich`]).
    pub extra_documents: Vec<Value>,
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

/// The attachments of the contained DocumentReferences of a referral (STU3 JSON).
pub fn attachment_refs(referral: &Value) -> Vec<AttachmentRef> {
    let Some(contained) = referral.get("contained").and_then(Value::as_array) else {
        return Vec::new();
    };
    contained
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("DocumentReference"))
        .flat_map(|d| {
            d.get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| {
            let att = c.get("attachment")?;
            let id = att.get("id")?.as_str()?.to_string();
            let binary_id = att
                .get("url")
                .and_then(Value::as_str)
                .and_then(|u| u.rsplit_once("Binary/"))
                .map_or_else(|| id.clone(), |(_, b)| b.to_string());
            let status = att
                .get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(AVAILABILITY_URL))
                .and_then(|e| e.pointer("/valueCoding/code")?.as_str())
                .map(str::to_string);
            Some(AttachmentRef {
                id,
                binary_id,
                status,
            })
        })
        .collect()
}

/// UBRNs of related referrals (`supportingInfo` entries `ReferralRequest/<ubrn>`).
pub fn related_ubrns(referral: &Value) -> Vec<String> {
    referral
        .get("supportingInfo")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.get("reference")?
                .as_str()?
                .strip_prefix("ReferralRequest/")
        })
        .map(str::to_string)
        .collect()
}

/// Whether the referral is cancelled (`status` or the e-RS state `CANCELLED_REFERRAL`).
pub fn is_cancelled(referral: &Value) -> bool {
    if referral.get("status").and_then(Value::as_str) == Some("cancelled") {
        return true;
    }
    referral
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with("Extension-eRS-ReferralState-1"))
        })
        .flat_map(|e| {
            e.get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|s| s.get("url").and_then(Value::as_str) == Some("state"))
        .any(|s| {
            s.pointer("/valueCoding/code").and_then(Value::as_str) == Some("CANCELLED_REFERRAL")
        })
}

/// The contained DocumentReferences of a related referral, as a `{"contained": [...]}`
/// object whose resource and attachment ids are prefixed `<related ubrn>-`.
fn related_documents(related: &str, referral: &Value) -> Value {
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
fn clinical_info_document(ubrn: &str, size: usize) -> Value {
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
            "url": format!("ReferralRequest/{ubrn}/$ers.generateCRI"),
        }}],
    })
}

/// The referral as the mapping sees it: the A005 resource plus the extra documents, each
/// added to `contained` and referenced from `supportingInfo` (`#<id>`), so the mappings
/// render them like the referral's own attachments. Returns `None` when there are none.
pub fn enrich(referral: &Value, extra: &[Value]) -> Option<Value> {
    if extra.is_empty() {
        return None;
    }
    let mut r = referral.clone();
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

/// What to fetch besides the attachments.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    pub clinical_info: bool,
    pub related_attachments: bool,
}

/// Fetches the attachments (and, as configured, the clinical information PDF and related
/// referrals' attachments) of one referral version. A retryable failure fails the whole
/// fetch so the referral is tried again later; a permanent one leaves that file out.
pub async fn fetch_documents(
    ers: &ErsClient,
    ubrn: &str,
    referral: &Value,
    opts: FetchOptions,
) -> Result<Fetched, PipelineError> {
    let mut out = Fetched::default();
    fetch_attachments(ers, ubrn, &attachment_refs(referral), &mut out).await?;
    if opts.related_attachments {
        for related in related_ubrns(referral) {
            let r = ers
                .referral_json(&related, None)
                .await
                .map_err(|source| PipelineError::Ers {
                    ubrn: related.clone(),
                    source,
                });
            match r {
                Ok(r) => {
                    // A related referral's documents are extras: a pending one does not hold
                    // this referral back. Their ids are prefixed with the related UBRN, as
                    // attachment ids are only unique within one referral.
                    let docs = related_documents(&related, &r.resource);
                    let mut extra = Fetched::default();
                    fetch_attachments(ers, ubrn, &attachment_refs(&docs), &mut extra).await?;
                    out.attachments.extend(extra.attachments);
                    if let Some(list) = docs.get("contained").and_then(Value::as_array) {
                        out.extra_documents.extend(list.iter().cloned());
                    }
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::warn!(ubrn, related = %related, error = %e, "related referral not readable");
                }
            }
        }
    }
    if opts.clinical_info {
        match ers.clinical_info(ubrn).await {
            Ok(pdf) => {
                out.attachments
                    .insert(CLINICAL_INFO_KEY.to_string(), pdf.bytes.to_vec());
                out.extra_documents
                    .push(clinical_info_document(ubrn, pdf.bytes.len()));
            }
            Err(e) if e.is_retryable() => {
                return Err(PipelineError::Ers {
                    ubrn: ubrn.to_string(),
                    source: e,
                })
            }
            Err(e) => {
                tracing::warn!(ubrn, error = %e, "clinical information not available");
                out.unavailable
                    .push((CLINICAL_INFO_KEY.to_string(), e.to_string()));
            }
        }
    }
    Ok(out)
}

async fn fetch_attachments(
    ers: &ErsClient,
    ubrn: &str,
    refs: &[AttachmentRef],
    out: &mut Fetched,
) -> Result<(), PipelineError> {
    for a in refs {
        match a.status.as_deref() {
            None | Some("AVAILABLE") => {}
            Some("PENDING") => {
                out.pending.push(a.id.clone());
                continue;
            }
            Some(other) => {
                out.unavailable.push((a.id.clone(), other.to_string()));
                continue;
            }
        }
        match download(ers, &a.binary_id).await {
            Ok(bytes) => {
                out.attachments.insert(a.id.clone(), bytes);
            }
            Err(e) if is_pending(&e) => out.pending.push(a.id.clone()),
            Err(e) if e.is_retryable() => {
                return Err(PipelineError::Ers {
                    ubrn: ubrn.to_string(),
                    source: e,
                })
            }
            Err(e) => {
                tracing::warn!(ubrn, attachment = %a.id, error = %e, "attachment not downloadable");
                out.unavailable.push((a.id.clone(), e.to_string()));
            }
        }
    }
    Ok(())
}

/// A042, then A006 when A042 fails for good (e.g. not offered by this deployment).
async fn download(ers: &ErsClient, id: &str) -> Result<Vec<u8>, ErsError> {
    match ers.attachment(id).await {
        Ok(b) => Ok(b.bytes.to_vec()),
        Err(e) if e.is_retryable() || is_pending(&e) => Err(e),
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

    fn sample(name: &str) -> Value {
        let path = format!(
            "{}/samples/fhir/referrals/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn reads_attachment_statuses() {
        let refs = attachment_refs(&sample("with-unavailable-attachments"));
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
        let refs = attachment_refs(&sample("booked-dbs"));
        assert_eq!(refs[0].id, "80000");
        assert_eq!(refs[0].binary_id, "719f6045-e791-4029-8e0f-1201c02b0a55");
    }

    #[test]
    fn cancelled_by_status_or_state() {
        let mut r = sample("unbooked");
        assert!(!is_cancelled(&r));
        r["status"] = Value::from("cancelled");
        assert!(is_cancelled(&r));
    }

    #[test]
    fn related_ubrns_come_from_supporting_info() {
        assert_eq!(
            related_ubrns(&sample("with-related-referral")),
            ["000000070004"]
        );
    }
}
