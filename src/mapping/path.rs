//! The FHIRPath subset used by mappings: a parser into [`Expr`] and its grammar checks.
//!
//! Supported: navigation (`subject.identifier.value`), indexing (`coding[0]`), literals
//! (`'text'`, `12`, `true`), `=` / `!=`, `and` / `or`, variables (`%resource`, `%index`,
//! `%control_id`, `%timestamp`), `$this`, methods (`where`, `first`, `last`, `exists`,
//! `empty`, `count`, `not`, `extension(url)`, `resolve`, and the string functions
//! `upper lower trim substring replace startsWith endsWith contains length join toString`)
//! and the mapping functions of [`super::functions`] (`date`, `default`, `concat`,
//! `lookup`, `iif`, `attachment_base64`, `attachment_inline`, `attachment_error`, `nhs_number`, `ubrn`,
//! `decimal`, `divide`), called
//! without a receiver.
//! Evaluation is in [`super::eval`].

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal: text, a whole number or a boolean (kept as JSON so evaluation can
    /// borrow it instead of allocating).
    Lit(serde_json::Value),
    /// `%name`.
    Var(String),
    /// `$this` or the implicit focus at the start of a path.
    This,
    Member(Box<Expr>, String),
    Index(Box<Expr>, usize),
    /// A method on `base` (FHIRPath function).
    Method(Box<Expr>, String, Vec<Expr>),
    /// A mapping function (no receiver).
    Global(String, Vec<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Methods and their (min, max) argument counts.
const METHODS: &[(&str, usize, usize)] = &[
    ("where", 1, 1),
    ("first", 0, 0),
    ("last", 0, 0),
    ("exists", 0, 1),
    ("empty", 0, 0),
    ("count", 0, 0),
    ("not", 0, 0),
    ("extension", 1, 1),
    ("resolve", 0, 0),
    ("upper", 0, 0),
    ("lower", 0, 0),
    ("trim", 0, 0),
    ("substring", 1, 2),
    ("replace", 2, 2),
    ("startsWith", 1, 1),
    ("endsWith", 1, 1),
    ("contains", 1, 1),
    ("length", 0, 0),
    ("join", 0, 1),
    ("toString", 0, 0),
];

/// Mapping functions and their (min, max) argument counts.
pub const GLOBALS: &[(&str, usize, usize)] = &[
    ("date", 2, 2),
    ("default", 2, 2),
    ("concat", 1, usize::MAX),
    ("lookup", 2, 2),
    ("iif", 2, 3),
    ("attachment_base64", 1, 1),
    ("attachment_inline", 1, 1),
    ("attachment_error", 1, 1),
    ("nhs_number", 1, 1),
    ("ubrn", 1, 1),
    ("decimal", 2, 2),
    ("divide", 3, 3),
];

const VARS: &[&str] = &[
    "resource",
    "index",
    "control_id",
    "timestamp",
    "context",
    "sending_application",
    "sending_facility",
    "receiving_application",
    "receiving_facility",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(i64),
    Var(String),
    This,
    Punct(&'static str),
}

/// The tokens and the 1-based column (in characters) where each starts; an error names
/// its column.
fn tokenize(s: &str) -> Result<(Vec<Tok>, Vec<usize>), String> {
    let mut out = Vec::new();
    let mut cols = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = format!(" (column {})", i + 1);
        if !c.is_whitespace() {
            cols.push(i + 1);
        }
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string literal{at}")),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => v.push('\n'),
                            Some(&x) => v.push(x),
                            None => return Err(format!("unterminated string literal{at}")),
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push(Tok::Num(
                n.parse()
                    .map_err(|_| format!("number {n} is too large{at}"))?,
            ));
        } else if c.is_alphabetic() || c == '_' || c == '%' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // '%' and '$' are one byte, so slicing after them is on a char boundary.
            out.push(match c {
                '%' => Tok::Var(word[1..].to_string()),
                '$' if &word[1..] == "this" => Tok::This,
                '$' => return Err(format!("unknown {word}{at}")),
                _ => Tok::Ident(word),
            });
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '`')
                .ok_or(format!("unterminated `identifier`{at}"))?;
            out.push(Tok::Ident(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let p = match (two.as_str(), c) {
                ("!=", _) => "!=",
                (_, '.') => ".",
                (_, '(') => "(",
                (_, ')') => ")",
                (_, ',') => ",",
                (_, '=') => "=",
                (_, '[') => "[",
                (_, ']') => "]",
                _ => return Err(format!("unexpected character {c:?}{at}")),
            };
            i += p.len();
            out.push(Tok::Punct(p));
        }
    }
    Ok((out, cols))
}

struct Parser<'n> {
    /// Named expressions `%name` may refer to besides the built-in variables.
    names: &'n [String],
    toks: Vec<Tok>,
    /// The column of each token.
    cols: Vec<usize>,
    /// The column just past the expression.
    end: usize,
    pos: usize,
}

/// Parses an expression, checking function names, argument counts and variables.
pub fn parse(s: &str) -> Result<Expr, String> {
    parse_with(s, &[])
}

/// Like [`parse`], also taking `%name` for each of `names` (a mapping file's named
/// expressions, substituted by [`substitute`] once parsed).
pub fn parse_with(s: &str, names: &[String]) -> Result<Expr, String> {
    let (toks, cols) = tokenize(s)?;
    let mut p = Parser {
        toks,
        cols,
        names,
        end: s.chars().count() + 1,
        pos: 0,
    };
    if p.toks.is_empty() {
        return Err("empty expression".into());
    }
    let e = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(e),
        Some(t) => Err(format!(
            "unexpected {} after the expression{}",
            show(t),
            p.at(p.pos)
        )),
    }
}

/// `e` with every `%name` that `lookup` knows replaced by its expression (recursively: a
/// named expression may use an earlier one).
pub fn substitute(e: Expr, lookup: &dyn Fn(&str) -> Option<Expr>) -> Expr {
    let sub = |b: Box<Expr>| Box::new(substitute(*b, lookup));
    let all = |v: Vec<Expr>| v.into_iter().map(|a| substitute(a, lookup)).collect();
    match e {
        Expr::Var(name) => match lookup(&name) {
            Some(x) => substitute(x, lookup),
            None => Expr::Var(name),
        },
        Expr::Member(b, n) => Expr::Member(sub(b), n),
        Expr::Index(b, i) => Expr::Index(sub(b), i),
        Expr::Method(b, n, args) => Expr::Method(sub(b), n, all(args)),
        Expr::Global(n, args) => Expr::Global(n, all(args)),
        Expr::Eq(a, b, neg) => Expr::Eq(sub(a), sub(b), neg),
        Expr::And(a, b) => Expr::And(sub(a), sub(b)),
        Expr::Or(a, b) => Expr::Or(sub(a), sub(b)),
        other @ (Expr::Lit(_) | Expr::This) => other,
    }
}

/// Whether `name` can name an expression: an identifier that is not a built-in variable.
pub fn is_free_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !VARS.contains(&name)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Num(n) => n.to_string(),
        Tok::Var(v) => format!("%{v}"),
        Tok::This => "$this".into(),
        Tok::Punct(p) => format!("`{p}`"),
    }
}

impl Parser<'_> {
    /// ` (column N)` of token `i` (the end when there is none).
    fn at(&self, i: usize) -> String {
        format!(
            " (column {})",
            self.cols.get(i).copied().unwrap_or(self.end)
        )
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(q)) if q == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(t) => format!("expected `{p}`, found {}{}", show(t), self.at(self.pos)),
                None => format!("expected `{p}` at the end{}", self.at(self.pos)),
            })
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat_word("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.eq()?;
        while self.eat_word("and") {
            e = Expr::And(Box::new(e), Box::new(self.eq()?));
        }
        Ok(e)
    }

    fn eq(&mut self) -> Result<Expr, String> {
        let e = self.postfix()?;
        if self.eat("=") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.postfix()?), false));
        }
        if self.eat("!=") {
            return Ok(Expr::Eq(Box::new(e), Box::new(self.postfix()?), true));
        }
        Ok(e)
    }

    /// The arguments of `name(`, whose `(` is token `open`.
    fn args(&mut self, name: &str, open: usize) -> Result<Vec<Expr>, String> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.or()?);
            if self.eat(")") {
                return Ok(args);
            }
            if !self.eat(",") {
                let found = match self.peek() {
                    Some(t) => format!("found {}", show(t)),
                    None => "the expression ends".to_string(),
                };
                return Err(format!(
                    "`{name}(` opened at column {} is not closed: expected `,` or `)`, {found}{}",
                    self.cols[open],
                    self.at(self.pos)
                ));
            }
        }
    }

    fn call_or_member(&mut self, base: Expr, name: String, primary: bool) -> Result<Expr, String> {
        // The name is the token before the one at `pos`.
        let at_name = self.at(self.pos.saturating_sub(1));
        let open = self.pos;
        if !self.eat("(") {
            return Ok(Expr::Member(Box::new(base), name));
        }
        let args = self.args(&name, open)?;
        if primary {
            if let Some(&(_, min, max)) = GLOBALS.iter().find(|(n, ..)| *n == name) {
                check_arity(&name, args.len(), min, max).map_err(|e| e + &at_name)?;
                return Ok(Expr::Global(name, args));
            }
        }
        let Some(&(_, min, max)) = METHODS.iter().find(|(n, ..)| *n == name) else {
            return Err(format!("unknown function `{name}`{at_name}"));
        };
        check_arity(&name, args.len(), min, max).map_err(|e| e + &at_name)?;
        Ok(Expr::Method(Box::new(base), name, args))
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| format!("expression ends too early{}", self.at(self.pos)))?;
        let here = self.at(self.pos);
        self.pos += 1;
        match t {
            Tok::Str(s) => Ok(Expr::Lit(s.into())),
            Tok::Num(n) => Ok(Expr::Lit(n.into())),
            Tok::This => Ok(Expr::This),
            Tok::Var(v) if VARS.contains(&v.as_str()) || self.names.contains(&v) => {
                Ok(Expr::Var(v))
            }
            Tok::Var(v) => Err(format!("unknown variable %{v}{here}")),
            Tok::Ident(w) if w == "true" => Ok(Expr::Lit(true.into())),
            Tok::Ident(w) if w == "false" => Ok(Expr::Lit(false.into())),
            Tok::Ident(w) => self.call_or_member(Expr::This, w, true),
            Tok::Punct("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct(p) => Err(format!("unexpected `{p}`{here}")),
        }
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                match self.peek().cloned() {
                    Some(Tok::Ident(name)) => {
                        self.pos += 1;
                        e = self.call_or_member(e, name, false)?;
                    }
                    Some(t) => {
                        return Err(format!(
                            "expected a name after `.`, found {}{}",
                            show(&t),
                            self.at(self.pos)
                        ))
                    }
                    None => return Err(format!("expected a name after `.`{}", self.at(self.pos))),
                }
            } else if self.eat("[") {
                let Some(Tok::Num(n)) = self.peek().cloned() else {
                    return Err(format!(
                        "expected a number inside `[...]`{}",
                        self.at(self.pos)
                    ));
                };
                self.pos += 1;
                self.expect("]")?;
                e = Expr::Index(
                    Box::new(e),
                    usize::try_from(n).map_err(|_| "index too large")?,
                );
            } else {
                return Ok(e);
            }
        }
    }
}

fn check_arity(name: &str, n: usize, min: usize, max: usize) -> Result<(), String> {
    if n < min || n > max {
        let want = match (min, max) {
            (a, b) if a == b => a.to_string(),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(format!("`{name}` takes {want} argument(s), got {n}"));
    }
    Ok(())
}

impl Expr {
    /// Visits this expression and every sub-expression.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Member(b, _) | Expr::Index(b, _) => b.walk(f),
            Expr::Method(b, _, args) => {
                b.walk(f);
                args.iter().for_each(|a| a.walk(f));
            }
            Expr::Global(_, args) => args.iter().for_each(|a| a.walk(f)),
            Expr::Eq(a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_navigation_where_and_functions() {
        let e = parse("subject.identifier.where(system = 'x').value.first()").unwrap();
        assert!(matches!(e, Expr::Method(_, ref m, _) if m == "first"));
        let e = parse("lookup('priority', extension('u').valueCodeableConcept.coding[0].code)")
            .unwrap();
        assert!(matches!(e, Expr::Global(ref g, ref a) if g == "lookup" && a.len() == 2));
        assert!(parse("%index").is_ok());
        assert!(parse("a.b != 'c' and d or e.exists()").is_ok());
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            parse("a.frobnicate()").unwrap_err(),
            "unknown function `frobnicate` (column 3)"
        );
        assert_eq!(
            parse("lookup('t')").unwrap_err(),
            "`lookup` takes 2 argument(s), got 1 (column 1)"
        );
        assert_eq!(
            parse("%nope").unwrap_err(),
            "unknown variable %nope (column 1)"
        );
        assert_eq!(
            parse("'abc").unwrap_err(),
            "unterminated string literal (column 1)"
        );
        assert_eq!(
            parse("a b").unwrap_err(),
            "unexpected `b` after the expression (column 3)"
        );
        // A call left open names where it was opened, not a bare "expected `,`".
        assert_eq!(
            parse("default(id, concat(a, b)").unwrap_err(),
            "`default(` opened at column 8 is not closed: expected `,` or `)`, the \
             expression ends (column 25)"
        );
        assert_eq!(
            parse("first(a b)").unwrap_err(),
            "`first(` opened at column 6 is not closed: expected `,` or `)`, found `b` \
             (column 9)"
        );
        assert!(parse("").is_err());
        assert!(parse("a.").is_err());
    }
}
