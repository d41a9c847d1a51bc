//! Validation of the `Parameters` request bodies of the write operations against their
//! profiles (parameter names, cardinality, value types, code systems and codes, lengths).
//! Failures are 422 OperationOutcomes with the e-RS error code (`MISSING_VALUE`,
//! `UNEXPECTED_FIELD`, `INVALID_CODE`, `INVALID_VALUE`, `TOO_MANY_ITEMS`, …) and a
//! diagnostics string naming the parameter.

use serde_json::Value;

use super::outcome::Reject;

/// A parsed `Parameters` resource.
pub struct Params<'a> {
    /// The `parameter` entries.
    items: Vec<&'a Value>,
    /// `meta.profile[0]`, if given.
    profile: Option<&'a str>,
}

/// Reads a `Parameters` resource (422 `INVALID_FHIR_STRUCTURE` otherwise).
pub fn params(body: &Value) -> Result<Params<'_>, Reject> {
    if body["resourceType"] != "Parameters" {
        return Err(Reject::unprocessable(
            "INVALID_FHIR_STRUCTURE",
            "request body must be a Parameters resource",
        ));
    }
    let items = match &body["parameter"] {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        _ => {
            return Err(Reject::unprocessable(
                "INVALID_FHIR_STRUCTURE",
                "'parameter' must be an array",
            ))
        }
    };
    Ok(Params {
        items,
        profile: body["meta"]["profile"][0].as_str(),
    })
}

/// Reads a `Parameters` body of the profile `profile` whose parameter names are all in
/// `allowed`: [`params`], then [`Params::expect_profile`], then [`Params::allow_only`].
pub fn request<'a>(body: &'a Value, profile: &str, allowed: &[&str]) -> Result<Params<'a>, Reject> {
    let p = params(body)?;
    p.expect_profile(profile)?;
    p.allow_only(allowed)?;
    Ok(p)
}

impl<'a> Params<'a> {
    /// Checks `meta.profile` names `https://fhir.nhs.uk/STU3/StructureDefinition/<name>`.
    pub fn expect_profile(&self, name: &str) -> Result<(), Reject> {
        let expected = format!("https://fhir.nhs.uk/STU3/StructureDefinition/{name}");
        match self.profile {
            Some(p) if p == expected => Ok(()),
            Some(p) => Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("meta.profile must be {expected}, got {p}"),
            )),
            None => Err(Reject::unprocessable(
                "MISSING_VALUE",
                format!("meta.profile is required ({expected})"),
            )),
        }
    }

    /// Rejects parameters whose name is not in `allowed` (422 `UNEXPECTED_FIELD`).
    pub fn allow_only(&self, allowed: &[&str]) -> Result<(), Reject> {
        for (i, p) in self.items.iter().enumerate() {
            let name = p["name"].as_str().unwrap_or("");
            if !allowed.contains(&name) {
                return Err(Reject::unprocessable(
                    "UNEXPECTED_FIELD",
                    format!("'parameter[{i}]' ({name}) unknown parameter name"),
                ));
            }
        }
        Ok(())
    }

    /// All parameters named `name`.
    pub fn all(&self, name: &str) -> Vec<&'a Value> {
        self.items
            .iter()
            .copied()
            .filter(|p| p["name"] == name)
            .collect()
    }

    /// The single parameter `name` (422 `TOO_MANY_ITEMS` if repeated).
    pub fn one(&self, name: &str) -> Result<Option<&'a Value>, Reject> {
        let all = self.all(name);
        if all.len() > 1 {
            return Err(Reject::unprocessable(
                "TOO_MANY_ITEMS",
                format!("parameter {name} may appear at most once"),
            ));
        }
        Ok(all.first().copied())
    }

    /// An optional `valueCoding` whose system ends with `system_suffix` and whose code is
    /// in `codes` (when given).
    pub fn coding(
        &self,
        name: &str,
        system_suffix: &str,
        codes: Option<&[&str]>,
    ) -> Result<Option<String>, Reject> {
        let Some(p) = self.one(name)? else {
            return Ok(None);
        };
        let Some(coding) = p.get("valueCoding") else {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("parameter {name} must have a valueCoding"),
            ));
        };
        let system = coding["system"].as_str().unwrap_or("");
        if !system.ends_with(system_suffix) {
            return Err(Reject::unprocessable(
                "INVALID_CODE",
                format!("parameter {name}: code system {system:?} is not {system_suffix}"),
            ));
        }
        let Some(code) = coding["code"].as_str().filter(|c| !c.is_empty()) else {
            return Err(Reject::unprocessable(
                "MISSING_VALUE",
                format!("parameter {name}: valueCoding.code is required"),
            ));
        };
        if let Some(codes) = codes {
            if !codes.contains(&code) {
                return Err(Reject::unprocessable(
                    "INVALID_CODE",
                    format!("parameter {name}: code {code} is not allowed here"),
                ));
            }
        }
        Ok(Some(code.to_owned()))
    }

    /// A required `valueCoding` (422 `MISSING_VALUE` when absent).
    pub fn required_coding(
        &self,
        name: &str,
        system_suffix: &str,
        codes: Option<&[&str]>,
    ) -> Result<String, Reject> {
        self.coding(name, system_suffix, codes)?
            .ok_or_else(|| missing(name))
    }

    /// An optional non-empty `valueString` of at most `max` characters.
    pub fn string(&self, name: &str, max: usize) -> Result<Option<String>, Reject> {
        let Some(p) = self.one(name)? else {
            return Ok(None);
        };
        let Some(s) = p.get("valueString").and_then(Value::as_str) else {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("parameter {name} must have a valueString"),
            ));
        };
        if s.trim().is_empty() {
            return Err(Reject::unprocessable(
                "MISSING_VALUE",
                format!("parameter {name} must not be empty"),
            ));
        }
        if s.chars().count() > max {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("parameter {name} is longer than {max} characters"),
            ));
        }
        Ok(Some(s.to_owned()))
    }

    /// A required `valueString`.
    pub fn required_string(&self, name: &str, max: usize) -> Result<String, Reject> {
        self.string(name, max)?.ok_or_else(|| missing(name))
    }

    /// An optional `valueBoolean`.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, Reject> {
        let Some(p) = self.one(name)? else {
            return Ok(None);
        };
        p.get("valueBoolean")
            .and_then(Value::as_bool)
            .map(Some)
            .ok_or_else(|| {
                Reject::unprocessable(
                    "INVALID_VALUE",
                    format!("parameter {name} must have a valueBoolean"),
                )
            })
    }

    /// The `valueReference.reference` of `name`, if present.
    pub fn reference(&self, name: &str) -> Option<String> {
        self.all(name)
            .first()
            .and_then(|p| p["valueReference"]["reference"].as_str())
            .map(str::to_owned)
    }

    /// The `valueIdentifier` (system, value) of `name`, if present.
    pub fn identifier(&self, name: &str) -> Result<Option<(String, String)>, Reject> {
        let Some(p) = self.one(name)? else {
            return Ok(None);
        };
        let id = &p["valueIdentifier"];
        match (id["system"].as_str(), id["value"].as_str()) {
            (Some(s), Some(v)) if !v.is_empty() => Ok(Some((s.to_owned(), v.to_owned()))),
            _ => Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("parameter {name} must have a valueIdentifier with system and value"),
            )),
        }
    }

    /// The first coding (system, code) of `valueCodeableConcept` of `name`, if present.
    pub fn codeable(&self, name: &str) -> Result<Option<(String, String)>, Reject> {
        let Some(p) = self.one(name)? else {
            return Ok(None);
        };
        let c = &p["valueCodeableConcept"]["coding"][0];
        match (c["system"].as_str(), c["code"].as_str()) {
            (Some(s), Some(v)) => Ok(Some((s.to_owned(), v.to_owned()))),
            _ => Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("parameter {name} must have a valueCodeableConcept with a coding"),
            )),
        }
    }

    /// The DocumentReference resources of the repeated parameter `name`, each of
    /// attachment type `doc_type` and pointing at `Binary/<id>`.
    pub fn documents(&self, name: &str, doc_type: &str) -> Result<Vec<Value>, Reject> {
        let mut docs = Vec::new();
        let mut titles = std::collections::HashSet::new();
        for p in self.all(name) {
            let r = &p["resource"];
            if r["resourceType"] != "DocumentReference" {
                return Err(Reject::unprocessable(
                    "INVALID_VALUE",
                    format!("parameter {name} must carry a DocumentReference resource"),
                ));
            }
            let t = r["type"]["coding"][0]["code"].as_str().unwrap_or("");
            if t != doc_type {
                return Err(Reject::unprocessable(
                    "INVALID_CODE",
                    format!("parameter {name}: attachment type must be {doc_type}, got {t:?}"),
                ));
            }
            let url = r["content"][0]["attachment"]["url"].as_str().unwrap_or("");
            if !url.starts_with("Binary/") {
                return Err(Reject::unprocessable(
                    "INVALID_VALUE",
                    format!("parameter {name}: content[0].attachment.url must be Binary/<id>"),
                ));
            }
            if !titles.insert(url.to_owned()) {
                return Err(Reject::unprocessable(
                    "DUPLICATE_FILENAME",
                    format!("parameter {name}: {url} attached twice"),
                ));
            }
            docs.push(r.clone());
        }
        Ok(docs)
    }
}

fn missing(name: &str) -> Reject {
    Reject::unprocessable("MISSING_VALUE", format!("parameter {name} is required"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coding_checks_system_and_code() {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "p", "valueCoding": {"system": "https://fhir.nhs.uk/STU3/CodeSystem/eRS-Priority-1", "code": "SOON"}}
        ]});
        let p = params(&body).unwrap();
        let err = p
            .coding("p", "/eRS-Priority-1", Some(&["ROUTINE"]))
            .unwrap_err();
        assert_eq!(err.ers_code, "INVALID_CODE");
        assert_eq!(
            p.required_coding("q", "/x", None).unwrap_err().ers_code,
            "MISSING_VALUE"
        );
    }

    #[test]
    fn unknown_parameter_is_unexpected_field() {
        let body = json!({"resourceType": "Parameters", "parameter": [{"name": "zzz", "valueString": "x"}]});
        let err = params(&body).unwrap().allow_only(&["a"]).unwrap_err();
        assert_eq!(err.ers_code, "UNEXPECTED_FIELD");
        assert!(err.diagnostics.contains("zzz"));
    }

    #[test]
    fn long_string_is_invalid_value() {
        let body = json!({"resourceType": "Parameters", "parameter": [{"name": "c", "valueString": "abcdef"}]});
        let err = params(&body).unwrap().string("c", 3).unwrap_err();
        assert_eq!(err.ers_code, "INVALID_VALUE");
    }
}
