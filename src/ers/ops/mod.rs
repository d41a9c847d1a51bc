//! One typed async method per e-RS operation, on [`ErsClient`]. Each validates its inputs,
//! describes the call (path, body, `If-Match`) and parses the reply; the pipeline in
//! [`super::client`] does the rest. Paths follow ERS-API.md §6 (`STU3/v1/...` in legacy mode).
//! This file has the reads (A004–A008, A029) and the helpers; [`actions`] the referral
//! actions (A013, A014, A022, A028) and Advice & Guidance (A024–A027).

mod actions;

use bytes::Bytes;
use reqwest::{Method, StatusCode};

use super::{
    capability::{AuthMode, Operation},
    client::{Body, Call, ErsClient, Reply},
    error::ErsError,
};
use crate::fhir::{
    self,
    requests::FetchWorklist,
    worklist::{ListSelector, WorklistItem, WorklistItems},
    Bundle, CodeSystem, List, Parameters, ReferralRequest, Resource,
};
use crate::ids::{Ubrn, Version};

/// A resource with the version from its `ETag` (falling back to `meta.versionId`).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub resource: T,
    /// The version to send in `If-Match` on the next write.
    pub version: Option<Version>,
    /// The e-RS transaction id of the reply.
    pub request_id: Option<String>,
}

/// A downloaded file (attachment or clinical-information PDF).
#[derive(Debug, Clone)]
pub struct Binary {
    pub content_type: Option<String>,
    /// From `Content-Disposition`, when sent.
    pub filename: Option<String>,
    pub bytes: Bytes,
    pub request_id: Option<String>,
}

/// The `_include`s A025 asks for (the spec's spelling, typo included).
pub const CONVERSATION_INCLUDES: [&str; 3] = [
    "Communication:requester-practitionerrole:PractitionerRole",
    "Communication:sender-practitionerrole:PractionerRole",
    "Communication:content-reference:DocumentReference",
];

impl ErsClient {
    /// A004: reference data, e.g. `APPOINTMENT-CANCELLATION-REASON`.
    pub async fn reference_data(&self, code_system_type: &str) -> Result<CodeSystem, ErsError> {
        let op = Operation::A004;
        if code_system_type.is_empty()
            || !code_system_type
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                op,
                format!("{code_system_type:?} is not a code system type (e.g. SPECIALTY)"),
            ));
        }
        let call = self.get(op, self.stu3(&format!("CodeSystem/{code_system_type}")));
        parse(op, &self.execute(call).await?, "CodeSystem")
    }

    /// A005: a referral, the latest or (`version`) a check that it still is.
    pub async fn referral(
        &self,
        ubrn: &Ubrn,
        version: Option<Version>,
    ) -> Result<Versioned<ReferralRequest>, ErsError> {
        let reply = self.read_referral(ubrn, version).await?;
        versioned(
            Operation::A005,
            reply,
            "ReferralRequest",
            ReferralRequest::version,
        )
    }

    /// A005 as raw JSON: the referral exactly as e-RS sent it (every field, including the
    /// ones [`ReferralRequest`] does not model), for the mapping engine.
    pub async fn referral_json(
        &self,
        ubrn: &Ubrn,
        version: Option<Version>,
    ) -> Result<Versioned<serde_json::Value>, ErsError> {
        let op = Operation::A005;
        let reply = self.read_referral(ubrn, version).await?;
        // One pass into the tree, then its type checked on the tree (the typed path's
        // type-only pre-pass would scan every referral twice).
        let resource = fhir::value_checked(&reply.body, "ReferralRequest").map_err(|reason| {
            ErsError::Decode {
                operation: op,
                reason,
            }
        })?;
        // The referral asked for, not another resource or a broken one: its id is the UBRN
        // and its `meta.versionId` a version (the mapping reads both; never mapped from a
        // wrong body, issue 21).
        let decode = |reason: String| ErsError::Decode {
            operation: op,
            reason,
        };
        match resource.get("id") {
            Some(serde_json::Value::String(id)) if id == ubrn.as_str() => {}
            other => {
                return Err(decode(format!(
                    "the referral's id is {}, not the ubrn asked for",
                    other.map_or_else(|| "missing".to_string(), |v| v.to_string())
                )))
            }
        }
        let stated = match resource.pointer("/meta/versionId") {
            None => return Err(decode("meta.versionId is missing".into())),
            Some(v) => v
                .as_str()
                .and_then(|s| Version::parse(s).ok())
                .ok_or_else(|| decode(format!("meta.versionId is {v}, not a version")))?,
        };
        let version = reply.etag_version().or(Some(stated));
        Ok(Versioned {
            resource,
            version,
            request_id: reply.request_id,
        })
    }

    /// The one A005 call behind [`Self::referral`] and [`Self::referral_json`].
    async fn read_referral(
        &self,
        ubrn: &Ubrn,
        version: Option<Version>,
    ) -> Result<Reply, ErsError> {
        let op = Operation::A005;
        let call = self.get(op, self.stu3(&history("ReferralRequest", ubrn, version)));
        self.execute(call).await
    }

    /// A042: an attachment's bytes. Follows the 307 to the object store itself, with a
    /// plain client that sends no e-RS header or credential there.
    pub async fn attachment(&self, id: &str) -> Result<Binary, ErsError> {
        let op = Operation::A042;
        check_id(op, id)?;
        let mut call = self.get(op, format!("R4/Binary/{id}"));
        call.accept = "*/*";
        call.max_bytes = self.inner.max_attachment_bytes;
        call.accept_status = Some(StatusCode::TEMPORARY_REDIRECT);
        let reply = self.execute(call).await?;
        if reply.status != 307 {
            return Ok(binary(reply));
        }
        let location = reply.header("location").ok_or_else(|| ErsError::Decode {
            operation: op,
            reason: "307 without a Location header".into(),
        })?;
        let base =
            reqwest::Url::parse(&format!("{}/R4/Binary/{id}", self.inner.base)).map_err(|e| {
                ErsError::Decode {
                    operation: op,
                    reason: e.to_string(),
                }
            })?;
        let target = base.join(location).map_err(|e| ErsError::Decode {
            operation: op,
            reason: format!("bad redirect location: {e}"),
        })?;
        let (headers, bytes) = self.fetch_object(op, target.as_str()).await?;
        Ok(Binary {
            content_type: header_str(&headers, "content-type"),
            filename: header_str(&headers, "content-disposition")
                .as_deref()
                .and_then(filename_of),
            bytes,
            request_id: reply.request_id,
        })
    }

    /// A006 (deprecated, files up to 5 MB): an attachment's bytes from the STU3 endpoint.
    pub async fn attachment_stu3(&self, id: &str) -> Result<Binary, ErsError> {
        let op = Operation::A006;
        check_id(op, id)?;
        let mut call = self.get(op, self.stu3(&format!("Binary/{id}")));
        call.accept = "*/*";
        call.max_bytes = self.inner.max_attachment_bytes;
        Ok(binary(self.execute(call).await?))
    }

    /// A007: the clinical referral information as a PDF.
    pub async fn clinical_info(&self, ubrn: &Ubrn) -> Result<Binary, ErsError> {
        let op = Operation::A007;
        let mut call = Call::new(
            op,
            Method::POST,
            self.stu3(&clinical_info_path(ubrn)),
            self.inner.max_attachment_bytes,
        );
        call.accept = "application/pdf";
        Ok(binary(self.execute(call).await?))
    }

    /// A008: a referral worklist. In app-restricted mode only the provider lists with a
    /// service filter are allowed (and the platform allows 2 calls per service per day).
    pub async fn worklist(&self, req: &FetchWorklist) -> Result<List, ErsError> {
        self.check_worklist(req)?;
        self.fetch_list(Operation::A008, "ReferralRequest/$ers.fetchworklist", req)
            .await
    }

    /// A008 read for its items only, as the poller needs them: each entry is flattened as it
    /// is parsed ([`WorklistItems`]), so a list of thousands never exists as a typed tree
    /// (that tree was most of the poller's peak memory, BENCHMARKS.md).
    pub async fn worklist_items(&self, req: &FetchWorklist) -> Result<Vec<WorklistItem>, ErsError> {
        self.check_worklist(req)?;
        let items: WorklistItems = self
            .fetch_list(Operation::A008, "ReferralRequest/$ers.fetchworklist", req)
            .await?;
        Ok(items.into_items())
    }

    /// What A008 may be asked for in the current mode.
    fn check_worklist(&self, req: &FetchWorklist) -> Result<(), ErsError> {
        let op = Operation::A008;
        if req.list == ListSelector::AdviceAndGuidanceRequests {
            return Err(invalid(
                op,
                "the A&G list is fetched with advice_worklist (A023)".into(),
            ));
        }
        if self.mode() == AuthMode::AppRestricted
            && (!req.list.is_provider_list() || req.service.is_none())
        {
            return Err(invalid(
                op,
                "app-restricted mode allows only referrals-for-review and appointment-slot-issues with a service filter".into(),
            ));
        }
        Ok(())
    }

    /// A023: the A&G requests worklist (user-restricted only).
    pub async fn advice_worklist(&self, service: Option<&str>) -> Result<List, ErsError> {
        let mut req = FetchWorklist::new(ListSelector::AdviceAndGuidanceRequests);
        req.service = service.map(str::to_string);
        self.fetch_list(
            Operation::A023,
            "CommunicationRequest/$ers.fetchworklist",
            &req,
        )
        .await
    }

    async fn fetch_list<T: serde::de::DeserializeOwned>(
        &self,
        op: Operation,
        path: &str,
        req: &FetchWorklist,
    ) -> Result<T, ErsError> {
        let mut call = Call::new(op, Method::POST, self.stu3(path), self.inner.max_json_bytes);
        call.body = Some(fhir_body(op, Ok(req.to_parameters()))?);
        parse(op, &self.execute(call).await?, "List")
    }

    /// A029: the actions the user may take on the referral's latest `version`.
    pub async fn available_actions(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<Bundle, ErsError> {
        let op = Operation::A029;
        let mut call = self.get(op, self.stu3("Task"));
        call.query = vec![
            (
                "focus".into(),
                format!("ReferralRequest/{ubrn}/_history/{version}"),
            ),
            ("intent".into(), "proposal".into()),
            ("status".into(), "ready".into()),
        ];
        parse(op, &self.execute(call).await?, "Bundle")
    }

    fn get(&self, op: Operation, path: String) -> Call {
        Call::new(op, Method::GET, path, self.inner.max_json_bytes)
    }
}

fn invalid(operation: Operation, reason: String) -> ErsError {
    ErsError::InvalidInput { operation, reason }
}

/// The path of a referral's A007 clinical information PDF (relative to `STU3/`), also the
/// `url` the pipeline gives the document that stands for it.
pub fn clinical_info_path(ubrn: &Ubrn) -> String {
    format!("ReferralRequest/{ubrn}/$ers.generateCRI")
}

/// The attachment id to download (A042/A006) from an attachment's `url`: the part after
/// `Binary/`, else `None` (then the attachment's own id is the download id).
pub fn binary_id_of(url: &str) -> Option<&str> {
    url.rsplit_once("Binary/").map(|(_, id)| id)
}

fn history(ty: &str, ubrn: &Ubrn, version: Option<Version>) -> String {
    match version {
        Some(v) => format!("{ty}/{ubrn}/_history/{v}"),
        None => format!("{ty}/{ubrn}"),
    }
}

/// Attachment ids are UUIDs or `att-...`; only path-safe characters are accepted.
fn check_id(op: Operation, id: &str) -> Result<(), ErsError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && id != "."
        && id != ".."
    {
        Ok(())
    } else {
        Err(invalid(op, format!("{id:?} is not an attachment id")))
    }
}

/// The exact bytes a write sends as its `application/fhir+json` body for `p`: the
/// `Parameters` resource with its `resourceType`, compact JSON. The client sends these and
/// `ers-bridge decide` prints them, so what the offline tool shows is what e-RS gets.
pub fn request_body_bytes(p: Parameters) -> Result<String, serde_json::Error> {
    serde_json::to_value(Resource::from(p)).map(|v| v.to_string())
}

fn fhir_body(op: Operation, p: Result<Parameters, String>) -> Result<Body, ErsError> {
    let p = p.map_err(|r| invalid(op, r))?;
    request_body_bytes(p)
        .map(Body::Fhir)
        .map_err(|e| invalid(op, format!("cannot serialise the body: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(
    op: Operation,
    reply: &Reply,
    expected: &str,
) -> Result<T, ErsError> {
    fhir::from_slice_checked(&reply.body, expected).map_err(|reason| ErsError::Decode {
        operation: op,
        reason,
    })
}

fn versioned<T: serde::de::DeserializeOwned>(
    op: Operation,
    reply: Reply,
    expected: &str,
    meta_version: impl Fn(&T) -> Option<Version>,
) -> Result<Versioned<T>, ErsError> {
    let resource: T = parse(op, &reply, expected)?;
    let version = reply.etag_version().or_else(|| meta_version(&resource));
    Ok(Versioned {
        resource,
        version,
        request_id: reply.request_id,
    })
}

fn binary(reply: Reply) -> Binary {
    Binary {
        content_type: header_str(&reply.headers, "content-type"),
        filename: header_str(&reply.headers, "content-disposition")
            .as_deref()
            .and_then(filename_of),
        bytes: reply.body,
        request_id: reply.request_id,
    }
}

fn header_str(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

/// The `filename` of a `Content-Disposition` value, reduced to its last path component.
fn filename_of(cd: &str) -> Option<String> {
    let raw = cd
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("filename="))?
        .trim_matches('"');
    let name = raw.rsplit(['/', '\\']).next()?.trim();
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id(Operation::A042, "c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1").is_ok());
        assert!(check_id(Operation::A042, "att-70000-70001").is_ok());
        assert!(check_id(Operation::A042, "a/b").is_err());
        assert!(check_id(Operation::A042, "..").is_err());
    }

    #[test]
    fn content_disposition_filename() {
        assert_eq!(
            filename_of(r#"attachment; filename="000000070000_Clinical_Information_Summary.pdf""#)
                .as_deref(),
            Some("000000070000_Clinical_Information_Summary.pdf")
        );
        assert_eq!(
            filename_of(r#"attachment; filename="../../x.pdf""#).as_deref(),
            Some("x.pdf")
        );
        assert_eq!(filename_of("inline"), None);
    }
}
