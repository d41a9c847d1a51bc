//! Named expressions: a mapping file's `[let]` table, so a long path is written once and
//! used as `%name` in any expression of the file (`%referrer_org` instead of a
//! 150-character path copied by hand). Each is parsed (it may use the others), checked for
//! a name that leads back to itself, and pasted where it is used, so its paths start at
//! the use's focus (the referral, or the `for_each` item).

use std::collections::BTreeMap;

use toml::Spanned;

use super::compile::ErrFn;
use super::path::{self, Expr};
use super::MappingError;

/// The names and parsed expressions of `lets`; errors name `let.<name>` and its line.
pub(super) fn compile(
    lets: &BTreeMap<String, Spanned<String>>,
    err: &ErrFn<'_>,
) -> Result<(Vec<String>, BTreeMap<String, Expr>), MappingError> {
    let names: Vec<String> = lets.keys().cloned().collect();
    let mut out: BTreeMap<String, Expr> = BTreeMap::new();
    for (name, text) in lets {
        let field = format!("let.{name}");
        if !path::is_free_name(name) {
            return Err(err(
                text.span(),
                &field,
                format!(
                    "{name:?} cannot name an expression (an identifier, not a built-in variable)"
                ),
            ));
        }
        let e =
            path::parse_with(text.get_ref(), &names).map_err(|r| err(text.span(), &field, r))?;
        out.insert(name.clone(), e);
    }
    for (name, text) in lets {
        let mut seen = vec![name.clone()];
        if let Some(cycle) = cycle(&out[name], &out, &mut seen) {
            return Err(err(
                text.span(),
                &format!("let.{name}"),
                format!("uses itself: {cycle}"),
            ));
        }
    }
    Ok((names, out))
}

/// The chain of names by which `e` leads back to a name in `seen`, if any.
fn cycle(e: &Expr, lets: &BTreeMap<String, Expr>, seen: &mut Vec<String>) -> Option<String> {
    let mut found = None;
    visit_vars(e, &mut |name| {
        if found.is_some() {
            return;
        }
        if seen.iter().any(|s| s == name) {
            found = Some(format!("%{} -> %{name}", seen.join(" -> %")));
        } else if let Some(next) = lets.get(name) {
            seen.push(name.to_string());
            found = cycle(next, lets, seen);
            seen.pop();
        }
    });
    found
}

fn visit_vars(e: &Expr, f: &mut dyn FnMut(&str)) {
    match e {
        Expr::Var(n) => f(n),
        Expr::Member(b, _) | Expr::Index(b, _) => visit_vars(b, f),
        Expr::Method(b, _, args) => {
            visit_vars(b, f);
            args.iter().for_each(|a| visit_vars(a, f));
        }
        Expr::Global(_, args) => args.iter().for_each(|a| visit_vars(a, f)),
        Expr::Eq(a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
            visit_vars(a, f);
            visit_vars(b, f);
        }
        Expr::Lit(_) | Expr::This => {}
    }
}
