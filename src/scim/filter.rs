//! SCIM filters (RFC 7644 §3.4.2.2) parsed into an AST. Precedence: `not` > `and` > `or`;
//! attribute names are case-insensitive; values are JSON literals. Also accepted: Entra's
//! `emails[type eq "work"].value eq "x"` (a value path followed by a sub-attribute
//! comparison), read as `emails[type eq "work" and value eq "x"]`. Never panics: every
//! input yields a filter or an error message.

use serde_json::Value;

/// Longest filter accepted, and deepest nesting (a hostile filter must not exhaust the stack).
pub const MAX_FILTER_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }
}

/// `[urn:]attr[.sub]`, all lower-cased for matching (the original spelling is not needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Whether the path is in the `core` schema: no URN prefix, or that schema's.
    pub fn in_schema(&self, core: &str) -> bool {
        self.urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(core))
    }

    /// Parses `urn:…:attr.sub`, `attr.sub` or `attr`.
    pub fn parse(text: &str) -> Result<AttrPath, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let (urn, rest) = if lower.starts_with("urn:") {
            match lower.rfind(':') {
                Some(i) => (Some(lower[..i].to_string()), lower[i + 1..].to_string()),
                None => return Err(format!("invalid attribute path `{text}`")),
            }
        } else {
            (None, lower)
        };
        let mut parts = rest.splitn(2, '.');
        let attr = parts.next().unwrap_or_default().to_string();
        let sub = parts.next().map(str::to_string);
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !valid(&attr) || sub.as_deref().is_some_and(|s| !valid(s)) {
            return Err(format!("invalid attribute path `{text}`"));
        }
        Ok(AttrPath { urn, attr, sub })
    }

    /// `attr` or `attr.sub` (no URN), lower-case.
    pub fn dotted(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{}", self.attr, s),
            None => self.attr.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: Op,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[inner]`: `inner`'s paths are sub-attributes of one element of `attr`.
    ValuePath {
        path: AttrPath,
        inner: Box<Filter>,
    },
}

impl Filter {
    /// `userName eq "…"`: at most one user, found by one probe of a unique index (and no
    /// group: groups have no userName); the userName compared. Not `id eq` on groups: a
    /// group's answer carries its whole member list.
    pub fn unique_user_name(&self) -> Option<&str> {
        match self {
            Filter::Compare {
                path,
                op: Op::Eq,
                value: Value::String(name),
            } if path.sub.is_none()
                && path.attr == "username"
                && path.in_schema(super::schema::USER_SCHEMA) =>
            {
                Some(name)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(serde_json::Number),
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `].sub` after a value path.
    DotAfterBracket(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1
            }
            '[' => {
                tokens.push(Token::LBracket);
                i += 1
            }
            ']' => {
                tokens.push(Token::RBracket);
                i += 1;
                if chars.get(i) == Some(&'.') {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && is_word_char(chars[j]) {
                        j += 1;
                    }
                    if j == start {
                        return Err("expected a sub-attribute after `].`".into());
                    }
                    tokens.push(Token::DotAfterBracket(chars[start..j].iter().collect()));
                    i = j;
                }
            }
            '"' => {
                // A JSON string: find its end honouring escapes, then let serde decode it.
                let start = i;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    return Err("unterminated string".into());
                }
                let raw: String = chars[start..i.min(chars.len())].iter().collect();
                let s: String =
                    serde_json::from_str(&raw).map_err(|_| format!("invalid string {raw}"))?;
                tokens.push(Token::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    i += 1;
                }
                let raw: String = chars[start..i].iter().collect();
                match serde_json::from_str::<serde_json::Number>(&raw) {
                    Ok(n) => tokens.push(Token::Num(n)),
                    Err(_) => return Err(format!("invalid number `{raw}`")),
                }
            }
            c if is_word_char(c) => {
                let start = i;
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | '.' | ':')
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

pub fn parse(input: &str) -> Result<Filter, String> {
    if input.len() > MAX_FILTER_LEN {
        return Err(format!("filter longer than {MAX_FILTER_LEN} characters"));
    }
    if input.trim().is_empty() {
        return Err("empty filter".into());
    }
    if super::schema::has_control(input) {
        return Err("a filter must not contain control characters".into());
    }
    let mut p = Parser {
        tokens: tokenize(input)?,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected {:?} after the filter", p.tokens[p.pos]));
    }
    Ok(f)
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("filter nested too deeply".into());
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, String> {
        self.enter()?;
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.peek_keyword("not") {
            self.pos += 1;
            if self.next() != Some(Token::LParen) {
                return Err("expected `(` after `not`".into());
            }
            let inner = self.or()?;
            if self.next() != Some(Token::RParen) {
                return Err("expected `)`".into());
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Token::RParen) {
                return Err("expected `)`".into());
            }
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn attr_expr(&mut self) -> Result<Filter, String> {
        let path = match self.next() {
            Some(Token::Word(w)) => AttrPath::parse(&w)?,
            other => return Err(format!("expected an attribute name, got {other:?}")),
        };
        if self.peek() == Some(&Token::LBracket) {
            self.pos += 1;
            if path.sub.is_some() {
                return Err("a value filter applies to an attribute, not a sub-attribute".into());
            }
            let inner = self.or()?;
            if self.next() != Some(Token::RBracket) {
                return Err("expected `]`".into());
            }
            let mut inner = inner;
            if let Some(Token::DotAfterBracket(sub)) = self.peek().cloned() {
                self.pos += 1;
                let sub_path = AttrPath::parse(&sub)?;
                let cmp = self.comparison(sub_path)?;
                inner = Filter::And(Box::new(inner), Box::new(cmp));
            }
            return Ok(Filter::ValuePath {
                path,
                inner: Box::new(inner),
            });
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, String> {
        let op_word = match self.next() {
            Some(Token::Word(w)) => w,
            other => {
                return Err(format!(
                    "expected an operator after the attribute, got {other:?}"
                ))
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = Op::parse(&op_word).ok_or_else(|| format!("unknown operator `{op_word}`"))?;
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Num(n)) => Value::Number(n),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            other => {
                return Err(format!(
                "expected a value (a quoted string, number, true, false or null), got {other:?}"
            ))
            }
        };
        Ok(Filter::Compare { path, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Filter {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn simple_comparisons_and_case_insensitive_names() {
        match p(r#"UserName Eq "Alice@Example.com""#) {
            Filter::Compare { path, op, value } => {
                assert_eq!(path.attr, "username");
                assert_eq!(op, Op::Eq);
                assert_eq!(value, Value::String("Alice@Example.com".into()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p("title pr"), Filter::Present(_)));
        assert!(matches!(
            p("meta.lastModified gt \"2011-05-13T04:42:34Z\""),
            Filter::Compare { .. }
        ));
        assert!(matches!(
            p("active eq true"),
            Filter::Compare {
                value: Value::Bool(true),
                ..
            }
        ));
    }

    #[test]
    fn precedence_and_grouping() {
        // a or b and c == a or (b and c)
        match p(r#"a eq "1" or b eq "2" and c eq "3""#) {
            Filter::Or(_, right) => assert!(matches!(*right, Filter::And(..))),
            other => panic!("{other:?}"),
        }
        match p(r#"(a eq "1" or b eq "2") and not (c eq "3")"#) {
            Filter::And(left, right) => {
                assert!(matches!(*left, Filter::Or(..)));
                assert!(matches!(*right, Filter::Not(..)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn value_paths_urns_and_the_entra_form() {
        match p(r#"emails[type eq "work" and value co "@example.com"]"#) {
            Filter::ValuePath { path, inner } => {
                assert_eq!(path.attr, "emails");
                assert!(matches!(*inner, Filter::And(..)));
            }
            other => panic!("{other:?}"),
        }
        match p(r#"emails[type eq "work"].value eq "a@b.c""#) {
            Filter::ValuePath { inner, .. } => match *inner {
                Filter::And(_, cmp) => match *cmp {
                    Filter::Compare { path, .. } => assert_eq!(path.attr, "value"),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        match p(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        ) {
            Filter::Compare { path, .. } => {
                assert_eq!(
                    path.urn.as_deref(),
                    Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user")
                );
                assert_eq!(path.attr, "employeenumber");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p(r#"name.familyName co "O'Malley""#),
            Filter::Compare { .. }
        ));
        assert!(matches!(
            p(r#"userName eq "quote\"inside""#),
            Filter::Compare { .. }
        ));
    }

    #[test]
    fn bad_filters_are_errors_not_panics() {
        for bad in [
            "",
            "userName",
            "userName eq",
            "userName zz \"x\"",
            "userName eq \"x",
            "(userName eq \"x\"",
            "userName eq \"x\")",
            "not userName eq \"x\"",
            "emails[type eq \"work\"",
            "a eq x",
            "]",
            "[",
            "\"",
            "a eq 1e",
            "a.b.c eq \"x\"",
            "emails[type eq \"w\"]. eq \"x\"",
            "x eq \"\\u12\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let deep = "(".repeat(100) + "a eq \"1\"" + &")".repeat(100);
        assert!(parse(&deep).is_err());
        assert!(parse(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
    }
}
