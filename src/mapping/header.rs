//! The sending and receiving application and facility (MSH-3 to MSH-6) of every outbound
//! message: one trust's values, set once in the configuration (`[mappings]
//! sending_application`, `sending_facility`, `receiving_application`,
//! `receiving_facility`) and read by the mapping files as `%sending_application`,
//! `%sending_facility`, `%receiving_application` and `%receiving_facility`, instead of a
//! literal copied into each file. The defaults are the samples' (`ERS_BRIDGE`, `RXX`,
//! `PAS`, `RXX`), so the goldens render the same without configuration.

/// MSH-3..6 as HD.1 values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    /// The trust's ODS code.
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
}

impl Default for Header {
    fn default() -> Self {
        Self {
            sending_application: "ERS_BRIDGE".into(),
            sending_facility: "RXX".into(),
            receiving_application: "PAS".into(),
            receiving_facility: "RXX".into(),
        }
    }
}

impl Header {
    /// The value of mapping variable `%name`, when it is one of these.
    pub fn var(&self, name: &str) -> Option<&str> {
        Some(match name {
            "sending_application" => &self.sending_application,
            "sending_facility" => &self.sending_facility,
            "receiving_application" => &self.receiving_application,
            "receiving_facility" => &self.receiving_facility,
            _ => return None,
        })
    }

    /// Why `value` cannot be an HD.1 (namespace id): empty, longer than 20 characters, or
    /// holding an HL7 delimiter.
    pub fn check(value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err("is empty".into());
        }
        if value.chars().count() > 20 {
            return Err(format!("{value:?} is longer than HD.1's 20 characters"));
        }
        if let Some(c) = value.chars().find(|c| "|^~\\&\r\n".contains(*c)) {
            return Err(format!("{value:?} holds the HL7 delimiter {c:?}"));
        }
        Ok(())
    }
}
