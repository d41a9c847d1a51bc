//! Applying a compiled mapping to one referral. Pure and deterministic: the control id,
//! the message time and the already-fetched attachment bytes are inputs, so the same
//! inputs always give the same bytes (the golden tests rely on it). Missing optional data
//! gives warnings; missing required data (`on_missing = "error"`) gives a named error.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::compile::{CompiledMapping, CompiledSegment, CompiledSet, Source};
use super::eval::{eval, into_text, truthy, AttachmentErrors, Attachments, Coll, Env};
use super::spec::OnMissing;
use super::MappingError;
use crate::hl7::{Delimiters, Message, Segment};
use crate::ids::{ControlId, Ubrn, Version};

/// The inputs of one application.
pub struct ApplyInput<'a> {
    /// The ReferralRequest as STU3 JSON.
    pub referral: &'a Value,
    /// MSH-10 (see [`CompiledMapping::control_id_for`]).
    pub control_id: &'a ControlId,
    /// MSH-7 and `%timestamp`.
    pub timestamp: DateTime<FixedOffset>,
    /// Attachment bytes by attachment id; absent ones are sent by reference.
    pub attachments: &'a Attachments,
    /// Why an attachment's bytes are absent (`attachment_error(id)`); empty when none failed.
    pub attachment_errors: &'a AttachmentErrors,
}

/// A mapped message and the warnings raised on the way.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub message: Message,
    pub warnings: Vec<String>,
    /// The `(table, code)` of each look-up that missed, once per miss (for the miss
    /// counters and the store's list of codes to add).
    pub lookup_misses: Vec<(String, String)>,
}

impl CompiledMapping {
    /// The deterministic MSH-10 for this mapping's event and the referral's `id` (UBRN) and
    /// `meta.versionId`.
    pub fn control_id_for(&self, referral: &Value) -> Result<ControlId, MappingError> {
        let field = |name: &str, reason: String| MappingError::Eval {
            field: "MSH-10".into(),
            name: name.into(),
            reason,
        };
        let id = referral.get("id").and_then(Value::as_str).unwrap_or("");
        let ubrn = Ubrn::parse(id).map_err(|e| field("UBRN (id)", e.to_string()))?;
        let version = referral
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = Version::parse(version)
            .map_err(|_| field("meta.versionId", "must be digits".into()))?;
        ControlId::outbound(&ubrn, version, &self.message_type[1])
            .map_err(|e| field("control id", e.to_string()))
    }

    /// Maps one referral to a message.
    pub fn apply(&self, input: &ApplyInput<'_>) -> Result<Rendered, MappingError> {
        let delimiters = Delimiters::default();
        let timestamp = input.timestamp.format("%Y%m%d%H%M%S%z").to_string();
        let env = Env {
            root: input.referral,
            index: Cell::new(1),
            control_id: input.control_id.as_str(),
            timestamp: &timestamp,
            tables: &self.tables,
            attachments: input.attachments,
            attachment_errors: input.attachment_errors,
            max_inline_bytes: self.max_inline_bytes,
            header: &self.header,
            warnings: RefCell::new(Vec::new()),
            lookup_misses: RefCell::new(Vec::new()),
        };
        let mut msh = Segment::new("MSH");
        msh.set(1, 1, 1, 1, delimiters.field.to_string());
        msh.set(2, 1, 1, 1, delimiters.encoding_characters());
        msh.set(7, 1, 1, 1, timestamp.as_str());
        for (i, part) in self.message_type.iter().enumerate() {
            msh.set(9, 1, i + 1, 1, part);
        }
        msh.set(10, 1, 1, 1, input.control_id.as_str());
        msh.set(12, 1, 1, 1, &self.hl7_version);
        msh.set(18, 1, 1, 1, &self.charset);

        let mut message = Message::new(delimiters);
        let root: Coll<'_> = vec![Cow::Borrowed(input.referral)];
        let mut i = 0;
        while i < self.segments.len() {
            let seg = &self.segments[i];
            let Some((key, for_each)) = &seg.for_each else {
                env.index.set(1);
                let base = if seg.id == "MSH" {
                    Some(std::mem::replace(&mut msh, Segment::new("MSH")))
                } else {
                    None
                };
                if let Some(s) = self.build(seg, &root, &env, base)? {
                    message.segments.push(s);
                }
                i += 1;
                continue;
            };
            let group_end = self.segments[i..]
                .iter()
                .position(|s| s.for_each.as_ref().map(|(k, _)| k) != Some(key))
                .map_or(self.segments.len(), |n| i + n);
            let items = eval(for_each, &root, &env).map_err(|r| MappingError::Eval {
                field: seg.id.clone(),
                name: "for_each".into(),
                reason: r,
            })?;
            for (n, item) in items.into_iter().enumerate() {
                env.index.set(n + 1);
                let focus = vec![item];
                for seg in &self.segments[i..group_end] {
                    if let Some(s) = self.build(seg, &focus, &env, None)? {
                        message.segments.push(s);
                    }
                }
            }
            i = group_end;
        }
        crate::hl7::normalise(&mut message);
        Ok(Rendered {
            message,
            warnings: env.warnings.into_inner(),
            lookup_misses: env.lookup_misses.into_inner(),
        })
    }

    /// Maps and encodes in the mapping's charset.
    pub fn render(&self, input: &ApplyInput<'_>) -> Result<(Rendered, Vec<u8>), MappingError> {
        let rendered = self.apply(input)?;
        let bytes = rendered.message.encode()?;
        Ok((rendered, bytes))
    }

    fn build<'a>(
        &self,
        seg: &CompiledSegment,
        focus: &[Cow<'a, Value>],
        env: &Env<'a>,
        base: Option<Segment>,
    ) -> Result<Option<Segment>, MappingError> {
        if let Some(when) = &seg.when {
            let v = eval(when, focus, env).map_err(|r| MappingError::Eval {
                field: seg.id.clone(),
                name: "when".into(),
                reason: r,
            })?;
            if !truthy(&v) {
                return Ok(None);
            }
        }
        let mut out = base.unwrap_or_else(|| Segment::new(&seg.id));
        for set in &seg.sets {
            apply_set(set, focus, env, &mut out)?;
        }
        Ok(Some(out))
    }
}

fn apply_set<'a>(
    set: &'a CompiledSet,
    focus: &[Cow<'a, Value>],
    env: &Env<'a>,
    out: &mut Segment,
) -> Result<(), MappingError> {
    let p = set.pos;
    let values: Vec<String> = match &set.source {
        Source::Const(parts) => {
            for (k, part) in parts.iter().enumerate() {
                out.set(p.field, p.rep, p.comp + k, p.sub, part.as_str());
            }
            return Ok(());
        }
        Source::Expr(e) => {
            let fail = |reason: String| MappingError::Eval {
                field: set.label.clone(),
                name: set.name.clone(),
                reason,
            };
            let coll = eval(e, focus, env).map_err(fail)?;
            if coll.len() > 1 && !set.repeat {
                return Err(fail(format!(
                    "expression yielded {} values; use first() or set repeat = true",
                    coll.len()
                )));
            }
            coll.into_iter()
                .map(|v| {
                    into_text(v).ok_or_else(|| {
                        fail("expression yielded a complex element, not text".into())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect()
        }
    };
    if values.is_empty() {
        match set.on_missing {
            OnMissing::Ignore => {}
            OnMissing::Warn => env
                .warnings
                .borrow_mut()
                .push(format!("{} ({}): no value", set.label, set.name)),
            OnMissing::Error => {
                return Err(MappingError::Missing {
                    field: set.label.clone(),
                    name: set.name.clone(),
                })
            }
        }
    }
    for (k, v) in values.into_iter().enumerate() {
        out.set(p.field, p.rep + k, p.comp, p.sub, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::compile_str;
    use serde_json::json;
    use std::path::Path;

    const MAPPING: &str = r#"
version = 1
message = "REF^I12^REF_I12"
hl7_version = "2.5.1"
charset = "UNICODE UTF-8"
[[segment]]
id = "MSH"
[[segment]]
id = "NTE"
for_each = "note"
when = "text != 'skip'"
[[segment.set]]
at = "1"
expr = "%index"
[[segment.set]]
at = "3"
expr = "text"
[[segment]]
id = "ZZZ"
[[segment.set]]
at = "1"
expr = "codes"
repeat = true
[[segment.set]]
at = "2"
expr = "missing"
on_missing = "warn"
name = "something optional"
"#;

    #[test]
    fn groups_conditions_repeats_and_warnings() {
        let m = compile_str("m.toml", MAPPING, Path::new(".")).unwrap();
        let referral = json!({
            "id": "000000070000", "meta": {"versionId": "7"},
            "note": [{"text": "a|b"}, {"text": "skip"}, {"text": "Zoë"}],
            "codes": ["x", "y"]
        });
        let control_id = m.control_id_for(&referral).unwrap();
        assert_eq!(control_id.as_str(), "000000070000I1200007");
        let input = ApplyInput {
            referral: &referral,
            control_id: &control_id,
            timestamp: DateTime::parse_from_rfc3339("2024-01-15T10:30:00+01:00").unwrap(),
            attachments: &Attachments::new(),
            attachment_errors: &Default::default(),
        };
        let (rendered, bytes) = m.render(&input).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "MSH|^~\\&|||||20240115103000+0100||REF^I12^REF_I12|000000070000I1200007||2.5.1||||||UNICODE UTF-8\r\
             NTE|1||a\\F\\b\rNTE|3||Zoë\rZZZ|x~y\r"
        );
        assert_eq!(
            rendered.warnings,
            vec!["ZZZ-2 (something optional): no value"]
        );
    }
}
