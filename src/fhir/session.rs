//! The legacy e-RS ProfessionalSession (A001 create, A002 select role): not FHIR, but the
//! same API boundary. Only the fields the client reads are typed; the A002 body is the A001
//! reply with `permission` set, so the reply is otherwise kept as JSON.

use serde::Deserialize;

/// `typeInfo` of the A001 request.
pub const SESSION_TYPE_INFO: &str = "uk.nhs.ers.xapi.dto.v1.session.ProfessionalSession";

/// The parts of a ProfessionalSession the client reads. Deliberately has no `token` field
/// and no `Serialize`: the smartcard token stays in the raw JSON only.
#[derive(Deserialize)]
pub struct SessionView {
    /// The session key sent as `HTTP_X_SESSION_KEY`.
    pub id: String,
    #[serde(default)]
    pub user: Option<SessionUser>,
    #[serde(default)]
    pub permission: Option<Permission>,
}

/// `ProfessionalSession.user`.
#[derive(Debug, Deserialize)]
pub struct SessionUser {
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// A role the user holds at an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub business_function: String,
    pub org_identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
}
