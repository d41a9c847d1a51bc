//! Compiling a mapping file: TOML → checked [`CompiledMapping`], once, so applying it per
//! referral does no parsing. Every error names the file, the line and the field.
//!
//! Checks: `version = 1`; MSH-9, MSH-12 and MSH-18 are valid (they are set from the header
//! keys); no set assigns a field the engine owns (MSH-1, 2, 7, 9, 10, 12, 18:
//! [`ENGINE_OWNED_MSH`]); the first segment is MSH; segment ids
//! are three upper-case letters or digits; each `set` has a valid position and exactly
//! one of `value` / `expr`; every expression parses; every `lookup` names a declared table
//! with a literal name; every table file loads.

use std::path::Path;

use toml::Spanned;

use super::path::{self, Expr};
use super::spec::{ConstValue, MappingFile, OnMissing, SetSpec};
use super::tables::{Table, Tables};
use super::{line_of, toml_error, MappingError};
use crate::hl7::Charset;

/// An HL7 position, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub field: usize,
    pub rep: usize,
    pub comp: usize,
    pub sub: usize,
}

/// Where a value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Const(Vec<String>),
    Expr(Expr),
}

#[derive(Debug, Clone)]
pub struct CompiledSet {
    pub pos: Position,
    pub source: Source,
    pub repeat: bool,
    pub on_missing: OnMissing,
    /// `PID-3.1`, for messages.
    pub label: String,
    /// The human name from the file, or the label.
    pub name: String,
    /// The expression or constant as written in the file (the mapping page shows it).
    pub source_text: String,
}

#[derive(Debug, Clone)]
pub struct CompiledSegment {
    pub id: String,
    /// The source text of `for_each` (groups are runs of equal text) and its expression.
    pub for_each: Option<(String, Expr)>,
    pub when: Option<Expr>,
    pub sets: Vec<CompiledSet>,
}

/// A mapping ready to apply. Shareable between threads (table counters are atomic).
#[derive(Debug)]
pub struct CompiledMapping {
    /// The file it came from, for messages.
    pub file: String,
    pub description: String,
    /// MSH-9 components.
    pub message_type: [String; 3],
    pub hl7_version: String,
    pub charset: String,
    pub max_inline_bytes: usize,
    pub tables: Tables,
    pub segments: Vec<CompiledSegment>,
    /// MSH-3..6 (`%sending_facility` ...): the defaults until [`CompiledMapping::with_header`].
    pub header: super::Header,
}

impl CompiledMapping {
    /// The same mapping sending as `header` (the configuration's `[mappings]` values).
    pub fn with_header(mut self, header: &super::Header) -> Self {
        self.header = header.clone();
        self
    }
}

/// Compiles the mapping file at `path`; tables are relative to its folder.
pub fn compile_file(path: &Path) -> Result<CompiledMapping, MappingError> {
    let (file, text) = super::read_text(path)?;
    compile_str(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Compiles mapping text; `file` names it in errors and `base` resolves table paths.
pub fn compile_str(file: &str, text: &str, base: &Path) -> Result<CompiledMapping, MappingError> {
    compile_inner(file, text, base, 0)
}

fn check_version(v: &Spanned<String>) -> Result<String, String> {
    match v.get_ref().as_str() {
        "2.4" | "2.5.1" => Ok(v.get_ref().clone()),
        _ => Err("must be 2.4 or 2.5.1".into()),
    }
}

fn compile_inner(
    file: &str,
    text: &str,
    base: &Path,
    depth: usize,
) -> Result<CompiledMapping, MappingError> {
    let spec: MappingFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let err = |span: std::ops::Range<usize>, field: &str, reason: String| MappingError::Invalid {
        file: file.to_string(),
        line: Some(line_of(text, span.start)),
        field: field.to_string(),
        reason,
    };
    if *spec.version.get_ref() != 1 {
        return Err(err(
            spec.version.span(),
            "version",
            "only version 1 is supported".into(),
        ));
    }
    let parts: Vec<&str> = spec.message.get_ref().split('^').collect();
    let valid_part =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if parts.len() != 3 || !parts.iter().all(|p| valid_part(p)) {
        return Err(err(
            spec.message.span(),
            "message",
            "must be type^event^structure, e.g. REF^I12^REF_I12".into(),
        ));
    }
    let message_type = [
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
    ];
    if let Some(ext) = &spec.extends {
        if !spec.segments.is_empty() || !spec.tables.is_empty() || !spec.lets.is_empty() {
            return Err(err(
                ext.span(),
                "extends",
                "a file that extends another has no segments, tables or [let] of its own".into(),
            ));
        }
        if depth >= 4 {
            return Err(err(
                ext.span(),
                "extends",
                "chain of `extends` is too deep".into(),
            ));
        }
        let base_path = base.join(ext.get_ref());
        let base_text = std::fs::read_to_string(&base_path).map_err(|e| {
            err(
                ext.span(),
                "extends",
                format!("{}: {e}", base_path.display()),
            )
        })?;
        let mut m = compile_inner(
            &base_path.display().to_string(),
            &base_text,
            base_path.parent().unwrap_or(Path::new(".")),
            depth + 1,
        )?;
        m.file = file.to_string();
        m.message_type = message_type;
        if let Some(d) = spec.description {
            m.description = d;
        }
        if let Some(v) = &spec.hl7_version {
            m.hl7_version = check_version(v).map_err(|r| err(v.span(), "hl7_version", r))?;
        }
        if let Some(c) = &spec.charset {
            Charset::from_msh18(c.get_ref()).map_err(|r| err(c.span(), "charset", r))?;
            m.charset = c.get_ref().clone();
        }
        if let Some(n) = spec.attachment_max_inline_bytes {
            m.max_inline_bytes = n;
        }
        return Ok(m);
    }
    let missing = |field: &str| MappingError::Invalid {
        file: file.to_string(),
        line: None,
        field: field.to_string(),
        reason: "missing (required unless the file uses `extends`)".into(),
    };
    let v = spec
        .hl7_version
        .as_ref()
        .ok_or_else(|| missing("hl7_version"))?;
    let version = check_version(v).map_err(|r| err(v.span(), "hl7_version", r))?;
    let c = spec.charset.as_ref().ok_or_else(|| missing("charset"))?;
    Charset::from_msh18(c.get_ref()).map_err(|r| err(c.span(), "charset", r))?;

    let mut tables = Tables::default();
    for (name, rel) in &spec.tables {
        let path = base.join(rel.get_ref());
        let table = Table::load(&path).map_err(|e| match e {
            MappingError::Io { reason, .. } => err(rel.span(), &format!("tables.{name}"), reason),
            other => other,
        })?;
        tables.insert(name, table);
    }

    let (names, lets) = super::lets::compile(&spec.lets, &err)?;
    let expand = |e: Expr| path::substitute(e, &|n: &str| lets.get(n).cloned());

    let mut segments = Vec::new();
    for (i, seg) in spec.segments.iter().enumerate() {
        let id = seg.id.get_ref();
        let b = id.as_bytes();
        let valid = b.len() == 3
            && b[0].is_ascii_uppercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid {
            return Err(err(
                seg.id.span(),
                "id",
                format!("{id:?} is not a segment id"),
            ));
        }
        if (i == 0) != (id == "MSH") {
            return Err(err(
                seg.id.span(),
                "id",
                "MSH must be the first segment, and only the first".into(),
            ));
        }
        let parse_expr = |s: &Spanned<String>, field: &str| -> Result<Expr, MappingError> {
            let e = path::parse_with(s.get_ref(), &names).map_err(|r| err(s.span(), field, r))?;
            let e = expand(e);
            check_lookups(&e, &tables).map_err(|r| err(s.span(), field, r))?;
            Ok(e)
        };
        let for_each = match &seg.for_each {
            Some(s) => Some((s.get_ref().clone(), parse_expr(s, "for_each")?)),
            None => None,
        };
        let when = seg
            .when
            .as_ref()
            .map(|s| parse_expr(s, "when"))
            .transpose()?;
        let mut sets = Vec::new();
        for set in &seg.sets {
            sets.push(compile_set(id, set, &err, &parse_expr)?);
        }
        segments.push(CompiledSegment {
            id: id.clone(),
            for_each,
            when,
            sets,
        });
    }
    if segments.is_empty() {
        return Err(MappingError::Invalid {
            file: file.to_string(),
            line: None,
            field: "segment".into(),
            reason: "a mapping needs at least the MSH segment".into(),
        });
    }
    Ok(CompiledMapping {
        file: file.to_string(),
        description: spec.description.unwrap_or_default(),
        message_type,
        hl7_version: version,
        charset: c.get_ref().clone(),
        max_inline_bytes: spec
            .attachment_max_inline_bytes
            .unwrap_or(super::spec::DEFAULT_MAX_INLINE_BYTES),
        tables,
        segments,
        header: super::Header::default(),
    })
}

pub(super) type ErrFn<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> MappingError + 'a;
type ParseFn<'a> = dyn Fn(&Spanned<String>, &str) -> Result<Expr, MappingError> + 'a;

fn compile_set(
    seg: &str,
    set: &SetSpec,
    err: &ErrFn<'_>,
    parse_expr: &ParseFn<'_>,
) -> Result<CompiledSet, MappingError> {
    let pos = parse_position(set.at.get_ref()).map_err(|r| err(set.at.span(), "at", r))?;
    let label = format!("{seg}-{}", set.at.get_ref());
    if seg == "MSH" {
        if let Some(why) = engine_owned(pos.field) {
            return Err(err(
                set.at.span(),
                "at",
                format!(
                    "MSH-{} is owned by the engine ({why}); a mapping cannot assign it",
                    pos.field
                ),
            ));
        }
    }
    let source = match (&set.value, &set.expr) {
        (Some(v), None) => Source::Const(match v.get_ref() {
            ConstValue::One(s) => vec![s.clone()],
            ConstValue::Components(c) => c.clone(),
        }),
        (None, Some(e)) => Source::Expr(parse_expr(e, "expr")?),
        _ => {
            return Err(err(
                set.at.span(),
                &label,
                "needs exactly one of `value` or `expr`".into(),
            ))
        }
    };
    let source_text = match (&set.value, &set.expr) {
        (Some(v), _) => match v.get_ref() {
            ConstValue::One(s) => format!("{s:?}"),
            ConstValue::Components(c) => format!("{c:?}"),
        },
        (None, Some(e)) => e.get_ref().clone(),
        (None, None) => String::new(),
    };
    Ok(CompiledSet {
        pos,
        source,
        source_text,
        repeat: set.repeat,
        on_missing: set.on_missing,
        name: set.name.clone().unwrap_or_else(|| label.clone()),
        label,
    })
}

/// The MSH fields the engine sets itself, with where each comes from (docs/mappings.md):
/// a mapping that assigned one would contradict the engine (a control id that is not the
/// deterministic one, a message time that is not the render's).
pub const ENGINE_OWNED_MSH: [(usize, &str); 7] = [
    (1, "the field separator"),
    (2, "the encoding characters"),
    (7, "the message time"),
    (9, "set from the file header `message`"),
    (10, "the deterministic control id"),
    (12, "set from the file header `hl7_version`"),
    (18, "set from the file header `charset`"),
];

/// Why MSH-`field` is the engine's, if it is.
fn engine_owned(field: usize) -> Option<&'static str> {
    ENGINE_OWNED_MSH
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, why)| *why)
}

/// Parses `field[.comp[.sub]]` with an optional `[rep]` after the field.
pub fn parse_position(s: &str) -> Result<Position, String> {
    let bad = || format!("{s:?} is not a position like 3, 3.1, 3[2].1 or 11.4.2");
    let mut parts = s.split('.');
    let first = parts.next().ok_or_else(bad)?;
    let (field, rep) = match first.split_once('[') {
        Some((f, r)) => (f, r.strip_suffix(']').ok_or_else(bad)?),
        None => (first, "1"),
    };
    let num = |t: &str| -> Result<usize, String> {
        t.parse::<usize>()
            .ok()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(bad)
    };
    let pos = Position {
        field: num(field)?,
        rep: num(rep)?,
        comp: parts.next().map_or(Ok(1), num)?,
        sub: parts.next().map_or(Ok(1), num)?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(pos)
}

fn check_lookups(e: &Expr, tables: &Tables) -> Result<(), String> {
    let mut problem = None;
    e.walk(&mut |x| {
        if let Expr::Global(name, args) = x {
            if name == "lookup" && problem.is_none() {
                problem = match args.first() {
                    Some(Expr::Lit(serde_json::Value::String(t))) if tables.contains(t) => None,
                    Some(Expr::Lit(serde_json::Value::String(t))) => Some(format!(
                        "lookup uses table {t:?}, which [tables] does not declare"
                    )),
                    _ => Some(
                        "lookup needs the table name as a literal, e.g. lookup('priority', ...)"
                            .into(),
                    ),
                };
            }
        }
    });
    problem.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\n[[segment]]\nid = \"MSH\"\n";

    fn compile(extra: &str) -> Result<CompiledMapping, MappingError> {
        compile_str("m.toml", &format!("{HEAD}{extra}"), Path::new("."))
    }

    #[test]
    fn positions() {
        assert_eq!(
            parse_position("3[2].4.1").unwrap(),
            Position {
                field: 3,
                rep: 2,
                comp: 4,
                sub: 1
            }
        );
        assert_eq!(
            parse_position("6").unwrap(),
            Position {
                field: 6,
                rep: 1,
                comp: 1,
                sub: 1
            }
        );
        assert!(parse_position("0").is_err());
        assert!(parse_position("3.1.1.1").is_err());
        assert!(parse_position("3[x]").is_err());
    }

    /// Every MSH field the engine sets is refused, whatever part of it the set names, and
    /// the error names the field; the fields a mapping may set are accepted.
    #[test]
    fn engine_owned_msh_fields_cannot_be_assigned() {
        for (field, _) in ENGINE_OWNED_MSH {
            for at in [
                format!("{field}"),
                format!("{field}.1"),
                format!("{field}[1].2"),
            ] {
                let e = compile(&format!("[[segment.set]]\nat = \"{at}\"\nvalue = \"X\"\n"))
                    .unwrap_err();
                let text = e.to_string();
                assert!(text.starts_with("m.toml:8: at: "), "{text}");
                assert!(
                    text.contains(&format!("MSH-{field} is owned by the engine")),
                    "{at}: {text}"
                );
            }
        }
        for field in [3, 4, 5, 6, 11, 15, 16, 17, 19] {
            compile(&format!(
                "[[segment.set]]\nat = \"{field}\"\nvalue = \"X\"\n"
            ))
            .unwrap_or_else(|e| panic!("MSH-{field}: {e}"));
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = compile("[[segment]]\nid = \"PID\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("m.toml:9: "), "{e}");
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let e = compile(
            "[[segment]]\nid = \"PID\"\n[[segment.set]]\nat = \"3.1\"\nexpr = \"a.nope()\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.toml:11: expr: unknown function `nope` (column 3)"
        );
        let e = compile(
            "[[segment]]\nid = \"PID\"\n[[segment.set]]\nat = \"3.1\"\nexpr = \"lookup('x', a)\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("which [tables] does not declare"),
            "{e}"
        );
        let e = compile("[[segment.set]]\nat = \"9\"\nvalue = \"X\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("MSH-9 is owned by the engine (set from the file header `message`)"),
            "{e}"
        );
        let e = compile("[[segment]]\nid = \"PID\"\n[[segment.set]]\nat = \"3\"\n").unwrap_err();
        assert!(e.to_string().contains("exactly one of"), "{e}");
        let e = compile_str(
            "m.toml",
            &HEAD.replace("version = 1", "version = 2"),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.toml:1: version: only version 1 is supported"
        );
    }
}
