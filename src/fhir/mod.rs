//! FHIR STU3 resource types for what the bridge reads from and sends to e-RS, with serde.
//!
//! These are boundary types: tolerant of unknown fields (e-RS adds elements over time),
//! with accessors for the e-RS extensions the bridge relies on. Request bodies are built from
//! the typed inputs in [`requests`], never from string templates; the contract tests check
//! that they equal the official example requests as JSON. No IO happens here.
//!
//! - [`common`]: datatypes (`Coding`, `Reference`, `Extension` with `value[x]`, ...).
//! - [`referral`]: `ReferralRequest` and its contained `Appointment`, `DocumentReference`, `List`.
//! - [`facts`]: `ReferralFacts`, the narrow borrowed view the outbound pipeline reads.
//! - [`worklist`]: the A008/A023 worklist `List` and its item extensions.
//! - [`codesystem`]: A004 `CodeSystem` (reference data, rejection reasons).
//! - [`advice`]: A&G `CommunicationRequest`, `Communication`, `Bundle`, `Task`.
//! - [`parameters`]: `Parameters`; [`requests`]: typed request bodies built into it.
//! - [`outcome`]: `OperationOutcome` (errors).
//! - [`session`]: the legacy ProfessionalSession DTO (A001/A002; not FHIR, same boundary).

pub mod advice;
pub mod codesystem;
pub mod common;
pub mod facts;
pub mod outcome;
pub mod parameters;
pub mod referral;
pub mod relevant;
pub mod requests;
pub mod session;
pub mod worklist;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

pub use advice::{Bundle, Communication, CommunicationRequest, Task};
pub use codesystem::CodeSystem;
pub use common::{CodeableConcept, Coding, Extension, Identifier, Meta, Reference, Value};
pub use facts::ReferralFacts;
pub use outcome::OperationOutcome;
pub use parameters::{Parameter, Parameters};
pub use referral::{Appointment, DocumentReference, List, ReferralRequest};

/// Any resource that can appear in `contained`, a `Bundle` entry or a `Parameters`
/// `resource`, dispatched on `resourceType`. Types the bridge does not model are kept as
/// JSON in [`Resource::Other`], so nothing is silently dropped when re-serialising.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    ReferralRequest(Box<ReferralRequest>),
    CommunicationRequest(Box<CommunicationRequest>),
    Communication(Box<Communication>),
    DocumentReference(Box<DocumentReference>),
    Appointment(Box<Appointment>),
    List(Box<List>),
    Parameters(Box<Parameters>),
    CodeSystem(Box<CodeSystem>),
    OperationOutcome(Box<OperationOutcome>),
    Bundle(Box<Bundle>),
    Task(Box<Task>),
    /// Any other resource type (Patient, Practitioner, PractitionerRole, ...), as received.
    Other(serde_json::Value),
}

impl Resource {
    /// The `resourceType`.
    pub fn resource_type(&self) -> &str {
        match self {
            Resource::ReferralRequest(_) => "ReferralRequest",
            Resource::CommunicationRequest(_) => "CommunicationRequest",
            Resource::Communication(_) => "Communication",
            Resource::DocumentReference(_) => "DocumentReference",
            Resource::Appointment(_) => "Appointment",
            Resource::List(_) => "List",
            Resource::Parameters(_) => "Parameters",
            Resource::CodeSystem(_) => "CodeSystem",
            Resource::OperationOutcome(_) => "OperationOutcome",
            Resource::Bundle(_) => "Bundle",
            Resource::Task(_) => "Task",
            Resource::Other(v) => v
                .get("resourceType")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
        }
    }

    /// The resource `id`, if present.
    pub fn id(&self) -> Option<&str> {
        match self {
            Resource::ReferralRequest(r) => r.id.as_deref(),
            Resource::CommunicationRequest(r) => r.id.as_deref(),
            Resource::Communication(r) => r.id.as_deref(),
            Resource::DocumentReference(r) => r.id.as_deref(),
            Resource::Appointment(r) => r.id.as_deref(),
            Resource::List(r) => r.id.as_deref(),
            Resource::Parameters(r) => r.id.as_deref(),
            Resource::CodeSystem(r) => r.id.as_deref(),
            Resource::OperationOutcome(r) => r.id.as_deref(),
            Resource::Bundle(r) => r.id.as_deref(),
            Resource::Task(r) => r.id.as_deref(),
            Resource::Other(v) => v.get("id").and_then(serde_json::Value::as_str),
        }
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let ty = v
            .get("resourceType")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            v: serde_json::Value,
            ty: &str,
        ) -> Result<Box<T>, E> {
            serde_json::from_value(v)
                .map(Box::new)
                .map_err(|e| E::custom(format!("{ty}: {e}")))
        }
        Ok(match ty.as_str() {
            "ReferralRequest" => Resource::ReferralRequest(typed(v, &ty)?),
            "CommunicationRequest" => Resource::CommunicationRequest(typed(v, &ty)?),
            "Communication" => Resource::Communication(typed(v, &ty)?),
            "DocumentReference" => Resource::DocumentReference(typed(v, &ty)?),
            "Appointment" => Resource::Appointment(typed(v, &ty)?),
            "List" => Resource::List(typed(v, &ty)?),
            "Parameters" => Resource::Parameters(typed(v, &ty)?),
            "CodeSystem" => Resource::CodeSystem(typed(v, &ty)?),
            "OperationOutcome" => Resource::OperationOutcome(typed(v, &ty)?),
            "Bundle" => Resource::Bundle(typed(v, &ty)?),
            "Task" => Resource::Task(typed(v, &ty)?),
            "" => return Err(D::Error::custom("resource without resourceType")),
            _ => Resource::Other(v),
        })
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut v = match self {
            Resource::ReferralRequest(r) => serde_json::to_value(r),
            Resource::CommunicationRequest(r) => serde_json::to_value(r),
            Resource::Communication(r) => serde_json::to_value(r),
            Resource::DocumentReference(r) => serde_json::to_value(r),
            Resource::Appointment(r) => serde_json::to_value(r),
            Resource::List(r) => serde_json::to_value(r),
            Resource::Parameters(r) => serde_json::to_value(r),
            Resource::CodeSystem(r) => serde_json::to_value(r),
            Resource::OperationOutcome(r) => serde_json::to_value(r),
            Resource::Bundle(r) => serde_json::to_value(r),
            Resource::Task(r) => serde_json::to_value(r),
            Resource::Other(v) => return v.serialize(s),
        }
        .map_err(S::Error::custom)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "resourceType".into(),
                serde_json::Value::String(self.resource_type().to_string()),
            );
        }
        v.serialize(s)
    }
}

/// Deserialises a top-level resource and checks its `resourceType`, so a body of the wrong
/// type (e.g. an OperationOutcome with status 200) is reported rather than half-parsed.
pub fn from_slice_checked<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    expected: &str,
) -> Result<T, String> {
    /// Only the type; serde skips the rest without building it.
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "resourceType", borrow, default)]
        resource_type: Option<std::borrow::Cow<'a, str>>,
    }
    let kind = match serde_json::from_slice::<Kind>(bytes) {
        Ok(k) => k.resource_type,
        // Valid JSON that is not an object (e.g. `[]`) has no resourceType either.
        Err(e) if e.is_data() => None,
        Err(e) => return Err(format!("not json: {e}")),
    };
    let found = kind.as_deref().unwrap_or("<none>");
    if found != expected {
        return Err(format!("expected a {expected}, got resourceType {found}"));
    }
    // Straight from the bytes into `T`: no intermediate `Value` tree (a worklist is MBs).
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| format!("{expected} at {}: {}", e.path(), e.inner()))?;
    de.end().map_err(|e| format!("not json: {e}"))?;
    Ok(value)
}

/// [`from_slice_checked`] into an untyped tree: parsed once, then its `resourceType` checked
/// on the tree, with the same messages.
pub fn value_checked(bytes: &[u8], expected: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not json: {e}"))?;
    let found = value
        .get("resourceType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("<none>");
    if found != expected {
        return Err(format!("expected a {expected}, got resourceType {found}"));
    }
    Ok(value)
}

/// A resource struct and its `resourceType`. The structs do not carry the type as a field;
/// [`FhirResource::to_json`] adds it when a resource is written out on its own.
pub trait FhirResource: Serialize {
    /// The `resourceType`.
    const TYPE: &'static str;

    /// The resource as JSON, with `resourceType`.
    fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("resourceType".into(), Self::TYPE.into());
        }
        v
    }
}

macro_rules! fhir_resource {
    ($($t:ident),+) => { $(impl FhirResource for $t { const TYPE: &'static str = stringify!($t); })+ };
}
fhir_resource!(
    ReferralRequest,
    CommunicationRequest,
    Communication,
    DocumentReference,
    Appointment,
    List,
    Parameters,
    CodeSystem,
    OperationOutcome,
    Bundle,
    Task
);

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
        from_slice_checked(body.as_bytes(), "ReferralRequest")
    }

    #[test]
    fn checks_the_resource_type_before_reading() {
        let v: serde_json::Value =
            read(r#"{"resourceType":"ReferralRequest","id":"000000070000"}"#).unwrap();
        assert_eq!(v["id"], "000000070000");
        let e = read::<serde_json::Value>(r#"{"resourceType":"OperationOutcome","issue":[]}"#)
            .unwrap_err();
        assert_eq!(
            e,
            "expected a ReferralRequest, got resourceType OperationOutcome"
        );
        for not_an_object in ["[]", "5", r#"{"resourceType":5}"#] {
            let e = read::<serde_json::Value>(not_an_object).unwrap_err();
            assert!(
                e.ends_with("got resourceType <none>"),
                "{not_an_object}: {e}"
            );
        }
    }

    /// The untyped read (A005 for the mapping) answers every input as the typed one does.
    #[test]
    fn the_untyped_read_checks_and_reports_as_the_typed_one() {
        let inputs = [
            r#"{"resourceType":"ReferralRequest","id":"000000070000"}"#,
            r#"{"resourceType":"OperationOutcome","issue":[]}"#,
            "[]",
            "5",
            r#"{"resourceType":5}"#,
            "{",
            r#"{"resourceType":"ReferralRequest"} x"#,
        ];
        for input in inputs {
            let typed = read::<serde_json::Value>(input);
            let untyped = value_checked(input.as_bytes(), "ReferralRequest");
            match (typed, untyped) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{input}"),
                (Err(a), Err(b)) if a.starts_with("not json") => {
                    assert!(b.starts_with("not json"), "{input}: {b}")
                }
                (a, b) => assert_eq!(a, b, "{input}"),
            }
        }
    }

    #[test]
    fn reports_bad_json_and_the_path_of_a_bad_field() {
        assert!(read::<serde_json::Value>("{")
            .unwrap_err()
            .starts_with("not json"));
        let trailing = r#"{"resourceType":"ReferralRequest"} x"#;
        assert!(read::<serde_json::Value>(trailing)
            .unwrap_err()
            .starts_with("not json"));
        let e =
            read::<ReferralRequest>(r#"{"resourceType":"ReferralRequest","meta":5}"#).unwrap_err();
        assert!(e.starts_with("ReferralRequest at meta:"), "{e}");
    }
}
