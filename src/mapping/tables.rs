//! Code tables: two-column CSV files (`code,local`, an optional third `description`
//! column) that translate e-RS codes to PAS local codes, or PAS reasons to e-RS codes.
//!
//! A miss is never silent: the caller turns it into a warning (and the pipeline counts it
//! in `ers_bridge_mapping_lookup_misses_total`) or a review item. Tables are read-only once
//! loaded, so a compiled mapping is shared between threads freely. Errors name the file
//! and line.

use std::collections::HashMap;
use std::path::Path;

use super::MappingError;

/// One loaded table.
#[derive(Debug)]
pub struct Table {
    pub file: String,
    map: HashMap<String, String>,
}

/// The tables a mapping uses, by name.
#[derive(Debug, Default)]
pub struct Tables {
    tables: HashMap<String, Table>,
}

impl Table {
    /// Parses CSV text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, MappingError> {
        let err = |line: Option<u64>, reason: String| MappingError::Invalid {
            file: file.to_string(),
            line: line.map(|l| l as usize),
            field: "table".into(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| err(Some(1), e.to_string()))?
            .clone();
        let names: Vec<&str> = headers.iter().map(str::trim).collect();
        if names.len() < 2 || names.len() > 3 || names[0] != "code" || names[1] != "local" {
            return Err(err(
                Some(1),
                "the header must be `code,local` or `code,local,description`".into(),
            ));
        }
        let mut map = HashMap::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| err(e.position().map(|p| p.line()), e.to_string()))?;
            let line = rec.position().map(|p| p.line());
            let code = rec.get(0).unwrap_or("").trim();
            let local = rec.get(1).unwrap_or("").trim();
            if code.is_empty() {
                return Err(err(line, "empty code".into()));
            }
            if map.insert(code.to_string(), local.to_string()).is_some() {
                return Err(err(line, format!("code {code:?} appears twice")));
            }
        }
        Ok(Self {
            file: file.to_string(),
            map,
        })
    }

    /// Reads a CSV file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let (file, text) = super::read_text(path)?;
        Self::parse(&file, &text)
    }

    /// Looks up a code.
    pub fn get(&self, code: &str) -> Option<&str> {
        self.map.get(code).map(String::as_str)
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Tables {
    pub fn insert(&mut self, name: &str, table: Table) {
        self.tables.insert(name.to_string(), table);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    /// The code whose local value is `local` in table `name` (the first, in code order,
    /// when several share it); `None` for a miss or an unknown table.
    pub fn reverse_lookup(&self, name: &str, local: &str) -> Option<&str> {
        self.tables
            .get(name)?
            .map
            .iter()
            .filter(|(_, l)| l.as_str() == local)
            .map(|(c, _)| c.as_str())
            .min()
    }

    /// Looks `code` up in table `name`; `None` for a miss or an unknown table.
    pub fn lookup(&self, name: &str, code: &str) -> Option<&str> {
        self.tables.get(name)?.get(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_codes_up() {
        let t = Table::parse("p.csv", "code,local\nROUTINE,R\nURGENT,A\n").unwrap();
        let mut tables = Tables::default();
        tables.insert("priority", t);
        assert_eq!(tables.lookup("priority", "URGENT"), Some("A"));
        assert_eq!(tables.lookup("priority", "NOPE"), None);
        assert_eq!(tables.lookup("nope", "URGENT"), None, "unknown table");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Table::parse("p.csv", "code,local\nA,1\nA,2\n").unwrap_err();
        assert_eq!(e.to_string(), "p.csv:3: table: code \"A\" appears twice");
        let e = Table::parse("p.csv", "from,to\n").unwrap_err();
        assert!(e.to_string().starts_with("p.csv:1:"), "{e}");
    }
}
