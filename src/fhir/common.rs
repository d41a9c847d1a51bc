//! FHIR STU3 datatypes shared by every resource the bridge reads or writes: [`Coding`],
//! [`CodeableConcept`], [`Identifier`], [`Reference`], [`Meta`], [`Attachment`] and
//! [`Extension`] with its `value[x]` choice ([`Value`]).
//!
//! All types tolerate unknown fields (e-RS adds fields over time) and omit empty optional
//! fields when serialised, so request bodies built from them match the official examples.

use serde::{Deserialize, Serialize};

/// `Meta`: version and profiles of a resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// The resource version; equals the number in the `ETag: W/"n"` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<String>,
}

impl Meta {
    /// A `Meta` carrying one profile URL, as every request body does.
    pub fn profile(url: &str) -> Self {
        Self {
            profile: vec![url.to_string()],
            ..Self::default()
        }
    }
}

/// `Coding`: a code from a code system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    /// A coding with a system and a code and no display, the shape e-RS requests use.
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
            code: Some(code.into()),
            display: None,
        }
    }

    /// The code, or an empty string when absent.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or_default()
    }
}

/// `CodeableConcept`: one or more codings plus optional text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl CodeableConcept {
    /// A concept with a single coding.
    pub fn from_coding(coding: Coding) -> Self {
        Self {
            coding: vec![coding],
            text: None,
        }
    }

    /// The first coding's code, if any.
    pub fn first_code(&self) -> Option<&str> {
        self.coding.iter().find_map(|c| c.code.as_deref())
    }
}

/// `Identifier`: a business identifier (NHS number, service id, SDS user id, ODS code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Identifier {
    /// An identifier with system and value.
    pub fn new(system: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
            value: Some(value.into()),
        }
    }
}

/// `Reference`: a literal reference (`ReferralRequest/000000070000`, `#appointment`) or a
/// logical one through an identifier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// e-RS references services and practitioner roles through extensions on the reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Reference {
    /// A literal reference.
    pub fn to(reference: impl Into<String>) -> Self {
        Self {
            reference: Some(reference.into()),
            ..Self::default()
        }
    }
}

/// `Period`: start and end date-times (kept as the strings sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// `Attachment`: metadata of a file; the bytes are fetched with A042 (or A006) from `url`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Binary/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation: Option<String>,
}

impl Attachment {
    /// The `eRS-AvailabilityStatus-1` code (`AVAILABLE`, `PENDING`, ...).
    pub fn availability(&self) -> Option<&str> {
        find_extension(&self.extension, super::referral::EXT_AVAILABILITY)?
            .value
            .as_ref()?
            .as_code()
    }
}

/// `Extension`: a URL, at most one `value[x]`, and nested extensions.
///
/// Deserialised by hand ([`Extension::deserialize`]): `#[serde(flatten)]` on the value
/// buffered every extension object and tried each `value[x]` variant in turn, which made
/// the typed referral view cost more than parsing the JSON itself (BENCHMARKS.md, issue 9).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extension {
    pub url: String,
    /// The `value[x]` element; `None` when absent or of a type this crate does not model.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
}

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ExtensionVisitor)
    }
}

/// Maps each `value[x]` key to its [`Value`] variant; one list for the key lookup and the
/// dispatch, checked against `Value`'s own serde names by a round-trip test.
macro_rules! value_choice {
    ($($key:literal => $variant:ident),* $(,)?) => {
        const VALUE_KEYS: &[&str] = &[$($key),*];

        fn next_value_choice<'de, A: serde::de::MapAccess<'de>>(
            key: &'static str,
            map: &mut A,
        ) -> Result<Value, A::Error> {
            match key {
                $($key => map.next_value().map(Value::$variant),)*
                other => Err(serde::de::Error::unknown_field(other, VALUE_KEYS)),
            }
        }
    };
}

value_choice! {
    "valueString" => String,
    "valueBoolean" => Boolean,
    "valueInteger" => Integer,
    "valueUnsignedInt" => UnsignedInt,
    "valuePositiveInt" => PositiveInt,
    "valueDecimal" => Decimal,
    "valueCode" => Code,
    "valueUri" => Uri,
    "valueDate" => Date,
    "valueDateTime" => DateTime,
    "valueInstant" => Instant,
    "valueCoding" => Coding,
    "valueCodeableConcept" => CodeableConcept,
    "valueIdentifier" => Identifier,
    "valueReference" => Reference,
    "valuePeriod" => Period,
    "valueAttachment" => Attachment,
}

/// The keys of an extension object, classified without allocating.
enum ExtensionKey {
    Url,
    Nested,
    Value(&'static str),
    /// Another key (`id`, or a `value[x]` type this crate does not model): skipped.
    Other,
}

impl<'de> Deserialize<'de> for ExtensionKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = ExtensionKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an extension field name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExtensionKey, E> {
                Ok(match v {
                    "url" => ExtensionKey::Url,
                    "extension" => ExtensionKey::Nested,
                    _ => VALUE_KEYS
                        .iter()
                        .find(|k| **k == v)
                        .map_or(ExtensionKey::Other, |k| ExtensionKey::Value(k)),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct ExtensionVisitor;

impl<'de> serde::de::Visitor<'de> for ExtensionVisitor {
    type Value = Extension;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a FHIR extension object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Extension, A::Error> {
        let mut url = None;
        let mut value = None;
        let mut extension = Vec::new();
        while let Some(key) = map.next_key::<ExtensionKey>()? {
            match key {
                ExtensionKey::Url => url = Some(map.next_value()?),
                ExtensionKey::Nested => extension = map.next_value()?,
                ExtensionKey::Value(k) => value = Some(next_value_choice(k, &mut map)?),
                ExtensionKey::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let url = url.ok_or_else(|| serde::de::Error::missing_field("url"))?;
        Ok(Extension {
            url,
            value,
            extension,
        })
    }
}

impl Extension {
    /// The nested extension with this (relative) url, e.g. `state` in the referral state.
    pub fn sub(&self, url: &str) -> Option<&Extension> {
        self.extension.iter().find(|e| e.url == url)
    }
}

/// The FHIR `value[x]` choice, serialised as `valueString`, `valueCoding`, ...
///
/// `valueDateTime` and `valueInstant` are both kept as their text: the e-RS examples use
/// either for the same element (e.g. the pathway start), so readers call
/// [`Value::as_date_time`], which accepts both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    #[serde(rename = "valueString")]
    String(String),
    #[serde(rename = "valueBoolean")]
    Boolean(bool),
    #[serde(rename = "valueInteger")]
    Integer(i64),
    #[serde(rename = "valueUnsignedInt")]
    UnsignedInt(u64),
    #[serde(rename = "valuePositiveInt")]
    PositiveInt(u64),
    #[serde(rename = "valueDecimal")]
    Decimal(f64),
    #[serde(rename = "valueCode")]
    Code(String),
    #[serde(rename = "valueUri")]
    Uri(String),
    #[serde(rename = "valueDate")]
    Date(String),
    #[serde(rename = "valueDateTime")]
    DateTime(String),
    #[serde(rename = "valueInstant")]
    Instant(String),
    #[serde(rename = "valueCoding")]
    Coding(Coding),
    #[serde(rename = "valueCodeableConcept")]
    CodeableConcept(CodeableConcept),
    #[serde(rename = "valueIdentifier")]
    Identifier(Identifier),
    #[serde(rename = "valueReference")]
    Reference(Reference),
    #[serde(rename = "valuePeriod")]
    Period(Period),
    #[serde(rename = "valueAttachment")]
    Attachment(Attachment),
}

impl Value {
    /// The date-time text of a `valueDateTime` or `valueInstant`.
    pub fn as_date_time(&self) -> Option<&str> {
        match self {
            Value::DateTime(s) | Value::Instant(s) | Value::Date(s) => Some(s),
            _ => None,
        }
    }

    /// The code of a `valueCoding`, `valueCodeableConcept` (first coding) or `valueCode`.
    pub fn as_code(&self) -> Option<&str> {
        match self {
            Value::Coding(c) => c.code.as_deref(),
            Value::CodeableConcept(cc) => cc.first_code(),
            Value::Code(s) => Some(s),
            _ => None,
        }
    }

    /// The coding of a `valueCoding` or the first coding of a `valueCodeableConcept`.
    pub fn as_coding(&self) -> Option<&Coding> {
        match self {
            Value::Coding(c) => Some(c),
            Value::CodeableConcept(cc) => cc.coding.first(),
            _ => None,
        }
    }

    /// The text of a `valueString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A `valueInteger`, `valueUnsignedInt` or `valuePositiveInt`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::UnsignedInt(u) | Value::PositiveInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// A `valueBoolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// A `valueReference`.
    pub fn as_reference(&self) -> Option<&Reference> {
        match self {
            Value::Reference(r) => Some(r),
            _ => None,
        }
    }
}

/// The first extension whose url ends with `suffix` (e-RS extension urls are absolute;
/// matching on the `StructureDefinition` name keeps readers short).
pub fn find_extension<'a>(extensions: &'a [Extension], suffix: &str) -> Option<&'a Extension> {
    extensions.iter().find(|e| e.url.ends_with(suffix))
}

/// Either one item or a list: e-RS sends some array elements as a single object (for
/// example `Appointment.participant.type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The items as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_accepts_date_time_and_instant() {
        let a: Extension =
            serde_json::from_str(r#"{"url":"x","valueDateTime":"2021-06-11T12:33:23.167Z"}"#)
                .unwrap();
        let b: Extension =
            serde_json::from_str(r#"{"url":"x","valueInstant":"2024-05-08T09:54:23.167Z"}"#)
                .unwrap();
        assert_eq!(
            a.value.unwrap().as_date_time(),
            Some("2021-06-11T12:33:23.167Z")
        );
        assert_eq!(
            b.value.unwrap().as_date_time(),
            Some("2024-05-08T09:54:23.167Z")
        );
    }

    #[test]
    fn every_value_choice_round_trips_through_the_hand_written_reader() {
        let values = [
            Value::String("s".into()),
            Value::Boolean(true),
            Value::Integer(-3),
            Value::UnsignedInt(3),
            Value::PositiveInt(4),
            Value::Decimal(1.5),
            Value::Code("c".into()),
            Value::Uri("u".into()),
            Value::Date("2024-01-02".into()),
            Value::DateTime("2024-01-02T03:04:05Z".into()),
            Value::Instant("2024-01-02T03:04:05.000Z".into()),
            Value::Coding(Coding::default()),
            Value::CodeableConcept(CodeableConcept::default()),
            Value::Identifier(Identifier::default()),
            Value::Reference(Reference::default()),
            Value::Period(Period::default()),
            Value::Attachment(Attachment::default()),
        ];
        assert_eq!(
            values.len(),
            VALUE_KEYS.len(),
            "a value[x] variant is missing"
        );
        for value in values {
            let ext = Extension {
                url: "x".into(),
                value: Some(value),
                extension: vec![],
            };
            let text = serde_json::to_string(&ext).unwrap();
            let back: Extension = serde_json::from_str(&text).unwrap();
            assert_eq!(back, ext, "{text}");
        }
        let missing = serde_json::from_str::<Extension>(r#"{"valueString":"s"}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `url`"),
            "{missing}"
        );
    }

    #[test]
    fn extension_tolerates_unknown_fields_and_value_types() {
        let e: Extension = serde_json::from_str(
            r#"{"url":"x","id":"a","valueSampledData":{"a":1},"extension":[{"url":"y","valueString":"s"}]}"#,
        )
        .unwrap();
        assert!(e.value.is_none());
        assert_eq!(
            e.sub("y").unwrap().value.as_ref().unwrap().as_str(),
            Some("s")
        );
    }

    #[test]
    fn value_serialises_as_value_x_key() {
        let e = Extension {
            url: "u".into(),
            value: Some(Value::Boolean(true)),
            extension: vec![],
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"url":"u","valueBoolean":true})
        );
    }
}
