//! FHIR `Parameters`: the body of every e-RS operation call (`$ers.rejectReferral`, ...) and
//! of some responses (A026), and the contained service-search criteria of a referral.
//! The typed request inputs that build these bodies are in [`super::requests`].

use serde::{Deserialize, Serialize};

use super::common::{Meta, Value};
use super::Resource;

/// A `Parameters` resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub parameter: Vec<Parameter>,
}

/// One named parameter: a `value[x]`, a `resource`, or nested `part`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part: Vec<Parameter>,
}

impl Parameter {
    /// A parameter with a `value[x]`.
    pub fn value(name: &str, value: Value) -> Self {
        Self {
            name: name.to_string(),
            value: Some(value),
            ..Self::default()
        }
    }

    /// A parameter carrying a resource.
    pub fn resource(name: &str, resource: Resource) -> Self {
        Self {
            name: name.to_string(),
            resource: Some(resource),
            ..Self::default()
        }
    }
}

impl Parameters {
    /// Empty parameters with one profile.
    pub fn with_profile(profile: &str) -> Self {
        Self {
            id: None,
            meta: Meta::profile(profile),
            parameter: Vec::new(),
        }
    }

    /// The first parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&Parameter> {
        self.parameter.iter().find(|p| p.name == name)
    }

    /// The resource of the first parameter named `name` (e.g. A026's
    /// `updatedCommunicationRequest`).
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.get(name)?.resource.as_ref()
    }

    /// Adds a value parameter.
    pub fn push_value(&mut self, name: &str, value: Value) {
        self.parameter.push(Parameter::value(name, value));
    }
}

impl From<Parameters> for Resource {
    fn from(p: Parameters) -> Self {
        Resource::Parameters(Box::new(p))
    }
}
