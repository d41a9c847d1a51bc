//! The mapping functions callable without a receiver in an expression:
//!
//! | function | result |
//! |---|---|
//! | `date(x, 'hl7')` | a FHIR date/dateTime/instant as HL7 TS, keeping its precision (`2021-06-13T12:30:00Z` → `20210613123000+0000`, `2021-06` → `202106`) |
//! | `date(x, '%d/%m/%Y')` | any chrono format, for full dates and date-times |
//! | `default(x, y)` | `x` unless it is empty, else `y` |
//! | `concat(a, b, ...)` | the texts joined (empty parts are skipped) |
//! | `lookup('table', x)` | the code table's value for `x`; a miss is counted and warned about, and yields empty |
//! | `iif(cond, a[, b])` | `a` when `cond` is true, else `b` (or empty); only the chosen branch runs |
//! | `attachment_base64(id)` | the fetched attachment's bytes in base64, if fetched and not over the inline limit |
//! | `attachment_inline(id)` | whether `attachment_base64(id)` would give a value |
//! | `attachment_error(id)` | why the attachment's bytes were not fetched (the download's error, or e-RS still scanning it); empty when fetched or not tried |
//! | `nhs_number(x)` | `x` if it is a valid NHS number (modulus 11), else an error; empty stays empty |
//! | `ubrn(x)` | `x` if it is a 12-digit UBRN, else an error; empty stays empty |
//! | `decimal(x, places)` | the FHIR decimal `x` rounded half away from zero to `places` decimals (`'2.345'`, 2 → `2.35`); exact, never through binary floating point |
//! | `divide(x, y, places)` | `x / y` as an exact decimal rounded to `places` (e.g. an attachment `size` in KB: `divide(size, 1024, 1)`); dividing by zero is an error |

use std::borrow::Cow;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::eval::{bool_val, eval, single_text, truthy, Coll, Env};
use super::path::Expr;
use crate::hl7::{NhsNumber, Ubrn};

fn text<'a>(s: String) -> Coll<'a> {
    vec![Cow::Owned(Value::String(s))]
}

/// Calls mapping function `name` (arity was checked by the parser).
pub fn call<'a>(
    name: &str,
    args: &'a [Expr],
    focus: &[Cow<'a, Value>],
    env: &Env<'a>,
) -> Result<Coll<'a>, String> {
    let arg = |i: usize| eval(&args[i], focus, env);
    let arg_text = |i: usize| -> Result<Option<String>, String> {
        Ok(single_text(&arg(i)?, name)?.filter(|s| !s.is_empty()))
    };
    match name {
        "iif" => {
            if truthy(&arg(0)?) {
                arg(1)
            } else if args.len() > 2 {
                arg(2)
            } else {
                Ok(Vec::new())
            }
        }
        "default" => {
            let first = arg(0)?;
            let blank = first.is_empty()
                || first
                    .iter()
                    .all(|v| matches!(v.as_ref(), Value::String(s) if s.is_empty()));
            if blank {
                arg(1)
            } else {
                Ok(first)
            }
        }
        "concat" => {
            let mut out = String::new();
            for i in 0..args.len() {
                if let Some(s) = arg_text(i)? {
                    out.push_str(&s);
                }
            }
            Ok(if out.is_empty() {
                Vec::new()
            } else {
                text(out)
            })
        }
        "date" => {
            let Some(value) = arg_text(0)? else {
                return Ok(Vec::new());
            };
            let format = arg_text(1)?.ok_or("date: the format is empty")?;
            format_date(&value, &format).map(text)
        }
        "lookup" => {
            let table = arg_text(0)?.ok_or("lookup: the table name is empty")?;
            let Some(code) = arg_text(1)? else {
                return Ok(Vec::new());
            };
            match env.tables.lookup(&table, &code) {
                Some(v) => Ok(text(v.to_string())),
                None => {
                    env.warnings
                        .borrow_mut()
                        .push(format!("table {table} has no entry for {code:?}"));
                    env.lookup_misses
                        .borrow_mut()
                        .push((table.clone(), code.clone()));
                    Ok(Vec::new())
                }
            }
        }
        "attachment_base64" | "attachment_inline" => {
            let id = arg_text(0)?.unwrap_or_default();
            let bytes = env
                .attachments
                .get(&id)
                .filter(|b| b.len() <= env.max_inline_bytes);
            Ok(match (name, bytes) {
                ("attachment_inline", b) => vec![bool_val(b.is_some())],
                (_, Some(b)) => text(base64::engine::general_purpose::STANDARD.encode(b)),
                (_, None) => Vec::new(),
            })
        }
        "attachment_error" => {
            let id = arg_text(0)?.unwrap_or_default();
            Ok(env
                .attachment_errors
                .get(&id)
                .map(|e| text(e.clone()))
                .unwrap_or_default())
        }
        "nhs_number" => match arg_text(0)? {
            None => Ok(Vec::new()),
            Some(s) => NhsNumber::parse(&s)
                .map(|n| text(n.as_str().to_string()))
                .map_err(|e| e.to_string()),
        },
        "ubrn" => match arg_text(0)? {
            None => Ok(Vec::new()),
            Some(s) => Ubrn::parse(&s)
                .map(|u| text(u.to_string()))
                .map_err(|e| e.to_string()),
        },
        "decimal" | "divide" => {
            let Some(x) = arg_text(0)? else {
                return Ok(Vec::new());
            };
            let x = parse_decimal(name, &x)?;
            let (value, places_arg) = if name == "divide" {
                let y = arg_text(1)?.ok_or("divide: the divisor is empty")?;
                let y = parse_decimal(name, &y)?;
                let q = x
                    .checked_div(y)
                    .ok_or_else(|| format!("divide: cannot divide {x} by {y}"))?;
                (q, 2)
            } else {
                (x, 1)
            };
            let places = arg_text(places_arg)?
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| *p <= 28)
                .ok_or_else(|| format!("{name}: places must be a whole number from 0 to 28"))?;
            Ok(text(round(value, places)))
        }
        other => Err(format!("unknown function `{other}`")),
    }
}

/// Parses a FHIR decimal (JSON number or text) exactly.
fn parse_decimal(name: &str, s: &str) -> Result<Decimal, String> {
    s.trim()
        .parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(s.trim()))
        .map_err(|_| format!("{name}: {s:?} is not a decimal number"))
}

/// Rounds half away from zero and prints exactly `places` decimals.
pub fn round(value: Decimal, places: u32) -> String {
    let mut r = value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(places);
    r.to_string()
}

/// Formats a FHIR date, dateTime or instant.
pub fn format_date(value: &str, format: &str) -> Result<String, String> {
    let bad = || format!("date: cannot read {value:?} as a FHIR date or dateTime");
    if format == "hl7" {
        return hl7_ts(value).ok_or_else(bad);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        return Ok(dt.format(format).to_string());
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.format(format).to_string());
    }
    Err(bad())
}

/// FHIR → HL7 TS keeping the precision: digits of the date and time, fractions dropped,
/// `Z` → `+0000`, `+01:00` → `+0100`.
fn hl7_ts(value: &str) -> Option<String> {
    let (date, time) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let dparts: Vec<&str> = date.split('-').collect();
    let lens_ok = matches!(
        dparts
            .iter()
            .map(|p| p.len())
            .collect::<Vec<_>>()
            .as_slice(),
        [4] | [4, 2] | [4, 2, 2]
    );
    if !lens_ok || !dparts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut out: String = dparts.concat();
    let Some(time) = time else {
        return Some(out);
    };
    if dparts.len() != 3 {
        return None;
    }
    let (clock, zone) = if let Some(t) = time.strip_suffix('Z') {
        (t, "+0000".to_string())
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let z = &time[pos..];
        if z.len() != 6 || &z[3..4] != ":" {
            return None;
        }
        (&time[..pos], format!("{}{}", &z[..3], &z[4..]))
    } else {
        (time, String::new())
    };
    let clock = clock.split('.').next()?;
    let cparts: Vec<&str> = clock.split(':').collect();
    if cparts.len() < 2
        || cparts.len() > 3
        || !cparts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    out.push_str(&cparts.concat());
    out.push_str(&zone);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_dates_keep_precision_and_zone() {
        assert_eq!(
            format_date("2021-06-13T12:30:00.000Z", "hl7").unwrap(),
            "20210613123000+0000"
        );
        assert_eq!(
            format_date("2021-06-13T12:30:00+01:00", "hl7").unwrap(),
            "20210613123000+0100"
        );
        assert_eq!(format_date("2021-06-11", "hl7").unwrap(), "20210611");
        assert_eq!(format_date("2021-06", "hl7").unwrap(), "202106");
        assert_eq!(format_date("2021-06-11", "%d/%m/%Y").unwrap(), "11/06/2021");
        assert!(format_date("11/06/2021", "hl7").is_err());
        assert!(format_date("2021-06-13T1", "hl7").is_err());
    }
}
