//! Code tables: two-column CSV files (`code,local`, an optional third `description`
//! column) that translate e-RS codes to PAS local codes, or PAS reasons to e-RS codes.
//!
//! A miss is never silent: each table counts its hits and misses (atomics, so a compiled
//! mapping can be shared between threads), and the caller turns a miss into a warning or
//! a review item. Errors name the file and line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::MappingError;

/// One loaded table.
#[derive(Debug)]
pub struct Table {
    pub file: String,
    map: HashMap<String, String>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The tables a mapping uses, by name.
#[derive(Debug, Default)]
pub struct Tables {
    tables: HashMap<String, Table>,
}

/// Counters of one table, for reports and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub name: String,
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
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
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Reads a CSV file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let (file, text) = super::read_text(path)?;
        Self::parse(&file, &text)
    }

    /// Looks up a code, counting the hit or miss.
    pub fn get(&self, code: &str) -> Option<&str> {
        match self.map.get(code) {
            Some(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Tables {
    pub fn insert(&mut self, name: &str, table: Table) {
        self.tables.insert(name.to_string(), table);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    /// Looks `code` up in table `name`; `None` for a miss (counted) or an unknown table.
    pub fn lookup(&self, name: &str, code: &str) -> Option<&str> {
        self.tables.get(name)?.get(code)
    }

    /// Counters per table, sorted by name.
    pub fn stats(&self) -> Vec<TableStats> {
        let mut v: Vec<_> = self
            .tables
            .iter()
            .map(|(name, t)| TableStats {
                name: name.clone(),
                entries: t.map.len(),
                hits: t.hits.load(Ordering::Relaxed),
                misses: t.misses.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_and_misses() {
        let t = Table::parse("p.csv", "code,local\nROUTINE,R\nURGENT,A\n").unwrap();
        let mut tables = Tables::default();
        tables.insert("priority", t);
        assert_eq!(tables.lookup("priority", "URGENT"), Some("A"));
        assert_eq!(tables.lookup("priority", "NOPE"), None);
        let s = &tables.stats()[0];
        assert_eq!((s.entries, s.hits, s.misses), (2, 1, 1));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Table::parse("p.csv", "code,local\nA,1\nA,2\n").unwrap_err();
        assert_eq!(e.to_string(), "p.csv:3: table: code \"A\" appears twice");
        let e = Table::parse("p.csv", "from,to\n").unwrap_err();
        assert!(e.to_string().starts_with("p.csv:1:"), "{e}");
    }
}
