//! Evaluation of [`Expr`] over STU3 JSON (`serde_json::Value`).
//!
//! Values are collections, as in FHIRPath: navigation flattens arrays, a missing element is
//! the empty collection, and functions that need one value say so when given several.
//! Evaluation borrows from the input where it can ([`Cow`]), so applying a mapping does
//! not copy the referral. It is pure: the control id, timestamp and fetched attachments
//! come in through [`Env`]; lookups record misses in [`Env::lookup_misses`]
//! and [`Env::warnings`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;

use super::path::Expr;
use super::tables::Tables;

/// A FHIRPath collection.
pub type Coll<'a> = Vec<Cow<'a, Value>>;

/// Attachment bytes already fetched, keyed by attachment id (and/or URL).
pub type Attachments = HashMap<String, Vec<u8>>;

/// Why an attachment's bytes are not in [`Attachments`], keyed like it: the download's
/// error, or that e-RS is still scanning it.
pub type AttachmentErrors = HashMap<String, String>;

/// What an evaluation can see besides its focus.
pub struct Env<'a> {
    /// The referral (`%resource`).
    pub root: &'a Value,
    /// 1-based position in the current `for_each` (`%index`); 1 outside one.
    pub index: std::cell::Cell<usize>,
    pub control_id: &'a str,
    /// The message time as an HL7 TS (`%timestamp`).
    pub timestamp: &'a str,
    pub tables: &'a Tables,
    pub attachments: &'a Attachments,
    pub attachment_errors: &'a AttachmentErrors,
    /// Attachments larger than this are sent by reference instead of inline.
    pub max_inline_bytes: usize,
    /// MSH-3..6 (`%sending_application` ...).
    pub header: &'a super::Header,
    /// Warnings raised while evaluating (lookup misses).
    pub warnings: RefCell<Vec<String>>,
    /// The `(table, code)` of each look-up that missed, once per miss (the pipeline counts
    /// and records them).
    pub lookup_misses: RefCell<Vec<(String, String)>>,
}

/// Evaluates `e` with `focus` as `$this`.
pub fn eval<'a>(e: &'a Expr, focus: &[Cow<'a, Value>], env: &Env<'a>) -> Result<Coll<'a>, String> {
    Ok(match e {
        Expr::Lit(v) => vec![Cow::Borrowed(v)],
        Expr::This => focus.to_vec(),
        Expr::Var(v) => match v.as_str() {
            "resource" => vec![Cow::Borrowed(env.root)],
            "context" => focus.to_vec(),
            "index" => vec![Cow::Owned(Value::from(env.index.get()))],
            "control_id" => vec![Cow::Owned(Value::String(env.control_id.to_string()))],
            "timestamp" => vec![Cow::Owned(Value::String(env.timestamp.to_string()))],
            other => match env.header.var(other) {
                Some(v) => vec![Cow::Owned(Value::String(v.to_string()))],
                None => return Err(format!("unknown variable %{other}")),
            },
        },
        Expr::Member(base, name) => {
            let mut out = Vec::new();
            if matches!(**base, Expr::This) {
                // The common path start: navigate the focus without copying it first.
                for item in focus {
                    member(item.clone(), name, &mut out);
                }
            } else {
                for item in eval(base, focus, env)? {
                    member(item, name, &mut out);
                }
            }
            out
        }
        Expr::Index(base, i) => eval(base, focus, env)?
            .into_iter()
            .nth(*i)
            .into_iter()
            .collect(),
        Expr::Eq(a, b, negate) => {
            let (a, b) = (eval(a, focus, env)?, eval(b, focus, env)?);
            if a.is_empty() || b.is_empty() {
                return Ok(Vec::new());
            }
            let equal = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y);
            vec![bool_val(equal != *negate)]
        }
        Expr::And(a, b) => {
            let r = truthy(&eval(a, focus, env)?) && truthy(&eval(b, focus, env)?);
            vec![bool_val(r)]
        }
        Expr::Or(a, b) => {
            let r = truthy(&eval(a, focus, env)?) || truthy(&eval(b, focus, env)?);
            vec![bool_val(r)]
        }
        Expr::Method(base, name, args) => {
            let base = eval(base, focus, env)?;
            method(base, name, args, focus, env)?
        }
        Expr::Global(name, args) => super::functions::call(name, args, focus, env)?,
    })
}

fn member<'a>(item: Cow<'a, Value>, name: &str, out: &mut Coll<'a>) {
    match item {
        Cow::Borrowed(Value::Object(map)) => match map.get(name) {
            Some(Value::Array(items)) => out.extend(items.iter().map(Cow::Borrowed)),
            Some(Value::Null) | None => {}
            Some(v) => out.push(Cow::Borrowed(v)),
        },
        Cow::Owned(Value::Object(mut map)) => match map.remove(name) {
            Some(Value::Array(items)) => out.extend(items.into_iter().map(Cow::Owned)),
            Some(Value::Null) | None => {}
            Some(v) => out.push(Cow::Owned(v)),
        },
        _ => {}
    }
}

pub fn bool_val<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

/// FHIRPath's singleton boolean evaluation: empty and `false` are false.
pub fn truthy(c: &Coll<'_>) -> bool {
    match c.as_slice() {
        [] => false,
        [v] => !matches!(v.as_ref(), Value::Bool(false)),
        _ => true,
    }
}

/// The text of a primitive; objects and arrays have none.
pub fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Like [`text_of`], taking ownership so an owned string (e.g. a base64 attachment) is
/// moved rather than copied.
pub fn into_text(v: Cow<'_, Value>) -> Option<String> {
    match v {
        Cow::Owned(Value::String(s)) => Some(s),
        other => text_of(&other),
    }
}

/// The single text value of a collection: `None` when empty, an error for several values
/// or a non-primitive.
pub fn single_text(c: &Coll<'_>, what: &str) -> Result<Option<String>, String> {
    match c.as_slice() {
        [] => Ok(None),
        [v] => text_of(v)
            .map(Some)
            .ok_or_else(|| format!("{what} expects text, got a {}", kind(v))),
        many => Err(format!(
            "{what} expects one value, got {} (use first() or where(...))",
            many.len()
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "complex element",
        Value::Array(_) => "list",
        _ => "value",
    }
}

fn text_coll<'a>(s: String) -> Coll<'a> {
    vec![Cow::Owned(Value::String(s))]
}

fn method<'a>(
    base: Coll<'a>,
    name: &str,
    args: &'a [Expr],
    focus: &[Cow<'a, Value>],
    env: &Env<'a>,
) -> Result<Coll<'a>, String> {
    let arg_text = |i: usize| -> Result<String, String> {
        let v = eval(&args[i], focus, env)?;
        Ok(single_text(&v, name)?.unwrap_or_default())
    };
    let arg_num = |i: usize| -> Result<usize, String> {
        let v = eval(&args[i], focus, env)?;
        match v.as_slice() {
            [n] => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{name} expects a whole number")),
            _ => Err(format!("{name} expects one number")),
        }
    };
    let string_fn = |f: &dyn Fn(&str) -> Result<String, String>| -> Result<Coll<'a>, String> {
        match single_text(&base, name)? {
            None => Ok(Vec::new()),
            Some(s) => Ok(text_coll(f(&s)?)),
        }
    };
    Ok(match name {
        "where" => {
            let mut out = Vec::new();
            for item in base {
                if truthy(&eval(&args[0], std::slice::from_ref(&item), env)?) {
                    out.push(item);
                }
            }
            out
        }
        "first" => base.into_iter().take(1).collect(),
        "last" => base.into_iter().last().into_iter().collect(),
        "exists" if args.is_empty() => vec![bool_val(!base.is_empty())],
        "exists" => {
            let mut found = false;
            for item in base {
                if truthy(&eval(&args[0], std::slice::from_ref(&item), env)?) {
                    found = true;
                    break;
                }
            }
            vec![bool_val(found)]
        }
        "empty" => vec![bool_val(base.is_empty())],
        "count" => vec![Cow::Owned(Value::from(base.len()))],
        "not" => vec![bool_val(!truthy(&base))],
        "extension" => {
            let url = arg_text(0)?;
            let mut exts = Vec::new();
            for item in base {
                member(item, "extension", &mut exts);
            }
            exts.into_iter()
                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
                .collect()
        }
        "resolve" => {
            let mut out = Vec::new();
            for item in base {
                let reference = match item.as_ref() {
                    Value::String(s) => Some(s.clone()),
                    v => v
                        .get("reference")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                };
                if let Some(id) = reference.as_deref().and_then(|r| r.strip_prefix('#')) {
                    let contained = env.root.get("contained").and_then(Value::as_array);
                    if let Some(found) = contained
                        .into_iter()
                        .flatten()
                        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                    {
                        out.push(Cow::Borrowed(found));
                    }
                }
            }
            out
        }
        "upper" => string_fn(&|s| Ok(s.to_uppercase()))?,
        "lower" => string_fn(&|s| Ok(s.to_lowercase()))?,
        "trim" => string_fn(&|s| Ok(s.trim().to_string()))?,
        "toString" => string_fn(&|s| Ok(s.to_string()))?,
        "length" => match single_text(&base, name)? {
            None => Vec::new(),
            Some(s) => vec![Cow::Owned(Value::from(s.chars().count()))],
        },
        "substring" => {
            let start = arg_num(0)?;
            let len = if args.len() > 1 {
                Some(arg_num(1)?)
            } else {
                None
            };
            string_fn(&|s| {
                let it = s.chars().skip(start);
                Ok(match len {
                    Some(n) => it.take(n).collect(),
                    None => it.collect(),
                })
            })?
        }
        "replace" => {
            let (from, to) = (arg_text(0)?, arg_text(1)?);
            if from.is_empty() {
                return Err("replace: the text to replace is empty".into());
            }
            string_fn(&|s| Ok(s.replace(&from, &to)))?
        }
        "startsWith" | "endsWith" | "contains" => {
            let needle = arg_text(0)?;
            match single_text(&base, name)? {
                None => Vec::new(),
                Some(s) => vec![bool_val(match name {
                    "startsWith" => s.starts_with(&needle),
                    "endsWith" => s.ends_with(&needle),
                    _ => s.contains(&needle),
                })],
            }
        }
        "join" => {
            let sep = if args.is_empty() {
                String::new()
            } else {
                arg_text(0)?
            };
            if base.is_empty() {
                return Ok(Vec::new());
            }
            let parts: Option<Vec<String>> = base.iter().map(|v| text_of(v)).collect();
            text_coll(parts.ok_or("join expects text values")?.join(&sep))
        }
        other => return Err(format!("unknown function `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::path::parse;
    use serde_json::json;

    fn run(expr: &str, v: &Value) -> Result<Vec<Value>, String> {
        let tables = Tables::default();
        let atts = Attachments::new();
        let env = Env {
            root: v,
            index: std::cell::Cell::new(1),
            control_id: "C1",
            timestamp: "20240115103000+0000",
            tables: &tables,
            attachments: &atts,
            attachment_errors: &AttachmentErrors::new(),
            max_inline_bytes: 10,
            header: &crate::mapping::Header::default(),
            warnings: RefCell::new(Vec::new()),
            lookup_misses: RefCell::new(Vec::new()),
        };
        let e = parse(expr)?;
        Ok(eval(&e, &[Cow::Borrowed(v)], &env)?
            .into_iter()
            .map(Cow::into_owned)
            .collect())
    }

    #[test]
    fn navigation_where_extension_and_strings() {
        let v = json!({
            "id": "000000070000",
            "extension": [{"url": "u1", "valueString": "a"}, {"url": "u2", "valueString": "b"}],
            "contained": [{"id": "d1", "resourceType": "DocumentReference", "x": "y"}],
            "supportingInfo": [{"reference": "#d1"}],
            "coding": [{"system": "s", "code": "c1"}, {"system": "t", "code": "c2"}]
        });
        assert_eq!(
            run("extension('u2').valueString", &v).unwrap(),
            vec![json!("b")]
        );
        assert_eq!(
            run("coding.where(system = 't').code", &v).unwrap(),
            vec![json!("c2")]
        );
        assert_eq!(
            run("coding.code.first().upper()", &v).unwrap(),
            vec![json!("C1")]
        );
        assert_eq!(run("coding[1].code", &v).unwrap(), vec![json!("c2")]);
        assert_eq!(
            run("supportingInfo.resolve().x", &v).unwrap(),
            vec![json!("y")]
        );
        assert_eq!(run("id.substring(6, 3)", &v).unwrap(), vec![json!("070")]);
        assert_eq!(
            run("coding.code.join('~')", &v).unwrap(),
            vec![json!("c1~c2")]
        );
        assert_eq!(run("nothing.exists()", &v).unwrap(), vec![json!(false)]);
        assert_eq!(
            run("coding.exists(code = 'c2')", &v).unwrap(),
            vec![json!(true)]
        );
        assert_eq!(run("%index", &v).unwrap(), vec![json!(1)]);
        assert!(run("coding.code.upper()", &v)
            .unwrap_err()
            .contains("expects one value, got 2"));
    }

    #[test]
    fn decimal_functions_are_exact_and_round_half_away_from_zero() {
        let v = json!({"size": 1536, "text": "2.345", "neg": "-2.345", "tiny": 0.1});
        assert_eq!(run("decimal(text, 2)", &v).unwrap(), vec![json!("2.35")]);
        assert_eq!(run("decimal(neg, 2)", &v).unwrap(), vec![json!("-2.35")]);
        assert_eq!(run("decimal(tiny, 3)", &v).unwrap(), vec![json!("0.100")]);
        assert_eq!(
            run("divide(size, 1024, 1)", &v).unwrap(),
            vec![json!("1.5")]
        );
        assert_eq!(run("divide(size, 1000, 0)", &v).unwrap(), vec![json!("2")]);
        assert_eq!(run("decimal(missing, 2)", &v).unwrap(), Vec::<Value>::new());
        assert!(run("divide(size, 0, 1)", &v)
            .unwrap_err()
            .contains("cannot divide 1536 by 0"));
        assert!(run("decimal('abc', 1)", &v)
            .unwrap_err()
            .contains("\"abc\" is not a decimal number"));
        assert!(run("decimal(text, 'x')", &v)
            .unwrap_err()
            .contains("places must be a whole number"));
    }
}
