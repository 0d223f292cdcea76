//! Filter AST → SQL, in one place. Indexed columns for the attributes IdPs filter on
//! (userName, externalId, active, id, meta dates; displayName and members for groups), the
//! `user_attrs` side table for every other user attribute. Values are always bound, LIKE
//! patterns escaped; the same SQL runs on SQLite and PostgreSQL (placeholders are the only
//! difference, rewritten at the end).

use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::Value;

use super::error::ScimError;
use super::filter::{AttrPath, Filter, Op};
use super::schema::{self, Kind, ENTERPRISE_SCHEMA, USER_SCHEMA};
use crate::db::ids::OrgId;
use crate::db::DbConn;
use crate::domain::fold;

#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// SQL text with `?` placeholders and their values, in order.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    pub fn bind(&mut self, b: Bind) -> &mut Self {
        self.text.push('?');
        self.binds.push(b);
        self
    }
    fn text(&mut self, s: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(s.into()))
    }
    pub fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
        self
    }
}

#[derive(Clone, Copy)]
enum Col {
    Text { col: &'static str, folded: bool },
    Bool(&'static str),
    Time(&'static str),
}

fn user_column(path: &AttrPath) -> Option<Col> {
    if !path.in_schema(USER_SCHEMA) {
        return None;
    }
    Some(match (path.attr.as_str(), path.sub.as_deref()) {
        ("id", None) => Col::Text {
            col: "u.id",
            folded: false,
        },
        ("username", None) => Col::Text {
            col: "u.user_name_folded",
            folded: true,
        },
        ("externalid", None) => Col::Text {
            col: "u.external_id",
            folded: false,
        },
        ("active", None) => Col::Bool("u.active"),
        ("meta", Some("created")) => Col::Time("u.created_at"),
        ("meta", Some("lastmodified")) => Col::Time("u.updated_at"),
        _ => return None,
    })
}

fn group_column(path: &AttrPath) -> Option<Col> {
    if !path.in_schema(schema::GROUP_SCHEMA) {
        return None;
    }
    Some(match (path.attr.as_str(), path.sub.as_deref()) {
        ("id", None) => Col::Text {
            col: "g.id",
            folded: false,
        },
        ("displayname", None) => Col::Text {
            col: "g.display_name_folded",
            folded: true,
        },
        ("externalid", None) => Col::Text {
            col: "g.external_id",
            folded: false,
        },
        ("meta", Some("created")) => Col::Time("g.created_at"),
        ("meta", Some("lastmodified")) => Col::Time("g.updated_at"),
        _ => return None,
    })
}

/// The side-table path of a user attribute, e.g. `emails.value`, `urn:…:user:manager.value`.
fn side_path(path: &AttrPath) -> Result<(String, String), ScimError> {
    let (prefix, attrs) = match path.urn.as_deref() {
        None => ("", schema::USER_ATTRS),
        Some(u) if u.eq_ignore_ascii_case(USER_SCHEMA) => ("", schema::USER_ATTRS),
        Some(u) if u.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
            ("enterprise", schema::ENTERPRISE_ATTRS)
        }
        Some(u) => {
            return Err(ScimError::invalid_filter(format!(
                "unknown schema `{u}` in filter"
            )))
        }
    };
    let attr = schema::find(attrs, &path.attr)
        .or_else(|| {
            (prefix.is_empty() && path.attr == "externalid").then_some(&schema::EXTERNAL_ID)
        })
        .ok_or_else(|| ScimError::invalid_filter(format!("unknown attribute `{}`", path.attr)))?;
    let root = if prefix.is_empty() {
        path.attr.clone()
    } else {
        format!("{}:{}", ENTERPRISE_SCHEMA.to_ascii_lowercase(), path.attr)
    };
    let full = match (&path.sub, attr.kind) {
        (Some(sub), _) => format!("{root}.{sub}"),
        (None, Kind::Complex) => format!("{root}.value"),
        (None, _) => root.clone(),
    };
    Ok((root, full))
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `<expr> <op> ?` for text; `expr` is a column or `x.value_folded`.
fn text_compare(sql: &mut Sql, expr: &str, op: &Op, value: String) -> Result<(), ScimError> {
    let (sym, pattern) = match op {
        Op::Eq => ("=", value),
        Op::Ne => ("<>", value),
        Op::Co => ("LIKE", format!("%{}%", like_escape(&value))),
        Op::Sw => ("LIKE", format!("{}%", like_escape(&value))),
        Op::Ew => ("LIKE", format!("%{}", like_escape(&value))),
        Op::Gt => (">", value),
        Op::Ge => (">=", value),
        Op::Lt => ("<", value),
        Op::Le => ("<=", value),
    };
    sql.push(&format!("{expr} {sym} ")).text(pattern);
    if sym == "LIKE" {
        sql.push(" ESCAPE '\\'");
    }
    Ok(())
}

fn parse_time(value: &Value) -> Result<i64, ScimError> {
    let text = value
        .as_str()
        .ok_or_else(|| ScimError::invalid_filter("dates are compared with an RFC 3339 string"))?;
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| ScimError::invalid_filter(format!("`{text}` is not an RFC 3339 date-time")))
}

fn column_compare(sql: &mut Sql, col: Col, op: &Op, value: &Value) -> Result<(), ScimError> {
    match col {
        Col::Text { col, folded } => {
            if value.is_null() {
                match op {
                    Op::Eq => sql.push(&format!("{col} IS NULL")),
                    Op::Ne => sql.push(&format!("{col} IS NOT NULL")),
                    _ => {
                        return Err(ScimError::invalid_filter(
                            "null can only be compared with eq or ne",
                        ))
                    }
                };
                return Ok(());
            }
            let text = value_text(value)
                .ok_or_else(|| ScimError::invalid_filter("unsupported comparison value"))?;
            let text = if folded { fold(&text) } else { text };
            if *op == Op::Ne {
                sql.push(&format!("({col} IS NULL OR "));
                text_compare(sql, col, op, text)?;
                sql.push(")");
                return Ok(());
            }
            text_compare(sql, col, op, text)
        }
        Col::Bool(col) => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                _ => {
                    return Err(ScimError::invalid_filter(
                        "a boolean attribute is compared with true or false",
                    ))
                }
            };
            let sym = match op {
                Op::Eq => "=",
                Op::Ne => "<>",
                _ => {
                    return Err(ScimError::invalid_filter(
                        "a boolean attribute supports only eq and ne",
                    ))
                }
            };
            sql.push(&format!("{col} {sym} ")).bind(Bind::Bool(b));
            Ok(())
        }
        Col::Time(col) => {
            let t = parse_time(value)?;
            let sym = match op {
                Op::Eq => "=",
                Op::Ne => "<>",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                _ => return Err(ScimError::invalid_filter("dates support eq ne gt ge lt le")),
            };
            sql.push(&format!("{col} {sym} ")).bind(Bind::Int(t));
            Ok(())
        }
    }
}

/// `and` / `or` / `not` in SQL, the same for every kind of filter; `leaf` writes the rest.
fn logical(
    sql: &mut Sql,
    f: &Filter,
    leaf: &mut dyn FnMut(&mut Sql, &Filter) -> Result<(), ScimError>,
) -> Result<(), ScimError> {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            let word = if matches!(f, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            logical(sql, a, leaf)?;
            sql.push(word);
            logical(sql, b, leaf)?;
            sql.push(")");
        }
        Filter::Not(a) => {
            sql.push("NOT (");
            logical(sql, a, leaf)?;
            sql.push(")");
        }
        other => leaf(sql, other)?,
    }
    Ok(())
}

/// The WHERE condition of a user filter (the caller adds the org and break-glass guards).
pub fn user_filter(org: &str, f: &Filter) -> Result<Sql, ScimError> {
    let mut sql = Sql::default();
    user_expr(&mut sql, org, f)?;
    Ok(sql)
}

fn user_expr(sql: &mut Sql, org: &str, f: &Filter) -> Result<(), ScimError> {
    logical(sql, f, &mut |sql, f| user_leaf(sql, org, f))
}

fn user_leaf(sql: &mut Sql, org: &str, f: &Filter) -> Result<(), ScimError> {
    match f {
        // Only reached through `logical`, which handles these itself.
        Filter::And(..) | Filter::Or(..) | Filter::Not(..) => user_expr(sql, org, f)?,
        Filter::Present(path) => match user_column(path) {
            Some(Col::Text { col, .. }) => {
                sql.push(&format!("({col} IS NOT NULL AND {col} <> '')"));
            }
            Some(_) => {
                sql.push("1 = 1");
            }
            None => {
                let (root, full) = side_path(path)?;
                sql.push("u.id IN (SELECT a.user_id FROM user_attrs a WHERE a.org_id = ")
                    .text(org);
                if path.sub.is_some() {
                    sql.push(" AND a.path = ").text(full).push(")");
                } else {
                    sql.push(" AND a.root = ").text(root).push(")");
                }
            }
        },
        Filter::Compare { path, op, value } => match user_column(path) {
            Some(col) => column_compare(sql, col, op, value)?,
            None => {
                let (_, full) = side_path(path)?;
                let negate = *op == Op::Ne;
                let op = if negate { &Op::Eq } else { op };
                let text = value_text(value)
                    .ok_or_else(|| ScimError::invalid_filter("unsupported comparison value"))?;
                sql.push(if negate { "u.id NOT IN" } else { "u.id IN" })
                    .push(" (SELECT a.user_id FROM user_attrs a WHERE a.org_id = ")
                    .text(org)
                    .push(" AND a.path = ")
                    .text(full)
                    .push(" AND ");
                text_compare(sql, "a.value_folded", op, fold(&text))?;
                sql.push(")");
            }
        },
        Filter::ValuePath { path, inner } => {
            let (root, _) = side_path(&AttrPath {
                sub: None,
                ..path.clone()
            })?;
            sql.push("u.id IN (SELECT a.user_id FROM user_attrs a WHERE a.org_id = ")
                .text(org)
                .push(" AND a.root = ")
                .text(root.clone())
                .push(" AND ");
            element_expr(sql, org, &root, inner)?;
            sql.push(")");
        }
    }
    Ok(())
}

/// A condition on one element (`a.ekey`) of a multi-valued attribute.
fn element_expr(sql: &mut Sql, org: &str, root: &str, f: &Filter) -> Result<(), ScimError> {
    logical(sql, f, &mut |sql, f| element_leaf(sql, org, root, f))
}

fn element_leaf(sql: &mut Sql, org: &str, root: &str, f: &Filter) -> Result<(), ScimError> {
    match f {
        // Only reached through `logical`, which handles these itself.
        Filter::And(..) | Filter::Or(..) | Filter::Not(..) => element_expr(sql, org, root, f)?,
        Filter::Present(p) => {
            sql.push("a.ekey IN (SELECT b.ekey FROM user_attrs b WHERE b.org_id = ")
                .text(org)
                .push(" AND b.path = ")
                .text(format!("{root}.{}", p.attr))
                .push(")");
        }
        Filter::Compare { path, op, value } => {
            let negate = *op == Op::Ne;
            let op = if negate { &Op::Eq } else { op };
            let text = value_text(value)
                .ok_or_else(|| ScimError::invalid_filter("unsupported comparison value"))?;
            sql.push(if negate { "a.ekey NOT IN" } else { "a.ekey IN" })
                .push(" (SELECT b.ekey FROM user_attrs b WHERE b.org_id = ")
                .text(org)
                .push(" AND b.path = ")
                .text(format!("{root}.{}", path.attr))
                .push(" AND ");
            text_compare(sql, "b.value_folded", op, fold(&text))?;
            sql.push(")");
        }
        Filter::ValuePath { .. } => {
            return Err(ScimError::invalid_filter("value filters cannot be nested"));
        }
    }
    Ok(())
}

/// The WHERE condition of a group filter.
pub fn group_filter(org: &str, f: &Filter) -> Result<Sql, ScimError> {
    let mut sql = Sql::default();
    group_expr(&mut sql, org, f)?;
    Ok(sql)
}

fn member_condition(sql: &mut Sql, org: &str, op: &Op, value: &Value) -> Result<(), ScimError> {
    let id =
        value_text(value).ok_or_else(|| ScimError::invalid_filter("members are matched by id"))?;
    let word = match op {
        Op::Eq => "g.id IN",
        Op::Ne => "g.id NOT IN",
        _ => return Err(ScimError::invalid_filter("members support eq and ne")),
    };
    sql.push(word)
        .push(" (SELECT m.group_id FROM memberships m WHERE m.org_id = ")
        .text(org)
        .push(" AND m.user_id = ")
        .text(id)
        .push(")");
    Ok(())
}

fn group_expr(sql: &mut Sql, org: &str, f: &Filter) -> Result<(), ScimError> {
    logical(sql, f, &mut |sql, f| group_leaf(sql, org, f))
}

fn group_leaf(sql: &mut Sql, org: &str, f: &Filter) -> Result<(), ScimError> {
    match f {
        // Only reached through `logical`, which handles these itself.
        Filter::And(..) | Filter::Or(..) | Filter::Not(..) => group_expr(sql, org, f)?,
        Filter::Present(path) if path.attr == "members" => {
            sql.push("g.id IN (SELECT m.group_id FROM memberships m WHERE m.org_id = ")
                .text(org)
                .push(")");
        }
        Filter::Present(path) => match group_column(path) {
            Some(Col::Text { col, .. }) => {
                sql.push(&format!("({col} IS NOT NULL AND {col} <> '')"));
            }
            Some(_) => {
                sql.push("1 = 1");
            }
            None => {
                return Err(ScimError::invalid_filter(format!(
                    "cannot filter groups on `{}`",
                    path.dotted()
                )))
            }
        },
        Filter::Compare { path, op, value } if path.attr == "members" => {
            if path.sub.as_deref().is_some_and(|s| s != "value") {
                return Err(ScimError::invalid_filter("members are matched by value"));
            }
            member_condition(sql, org, op, value)?;
        }
        Filter::ValuePath { path, inner } if path.attr == "members" => match inner.as_ref() {
            Filter::Compare { path: p, op, value } if p.attr == "value" => {
                member_condition(sql, org, op, value)?
            }
            _ => return Err(ScimError::invalid_filter("use members[value eq \"id\"]")),
        },
        Filter::Compare { path, op, value } => match group_column(path) {
            Some(col) => column_compare(sql, col, op, value)?,
            None => {
                return Err(ScimError::invalid_filter(format!(
                    "cannot filter groups on `{}`",
                    path.dotted()
                )))
            }
        },
        Filter::ValuePath { path, .. } => {
            return Err(ScimError::invalid_filter(format!(
                "cannot filter groups on `{}`",
                path.dotted()
            )))
        }
    }
    Ok(())
}

/// `ORDER BY` for a `sortBy` (unknown attributes fall back to creation order).
pub fn user_order(sort_by: Option<&str>, descending: bool) -> String {
    let col = sort_by.and_then(|s| {
        let p = AttrPath::parse(s).ok()?;
        Some(match (p.attr.as_str(), p.sub.as_deref()) {
            ("username", None) => "u.user_name_folded",
            ("externalid", None) => "u.external_id",
            ("displayname", None) => "u.display_name",
            ("id", None) => "u.id",
            ("name", Some("familyname")) => "u.family_name",
            ("name", Some("givenname")) => "u.given_name",
            ("emails", _) => "u.email_folded",
            ("meta", Some("created")) => "u.created_at",
            ("meta", Some("lastmodified")) => "u.updated_at",
            _ => return None,
        })
    });
    order_clause(col, descending, "u")
}

pub fn group_order(sort_by: Option<&str>, descending: bool) -> String {
    let col = sort_by.and_then(|s| {
        let p = AttrPath::parse(s).ok()?;
        Some(match (p.attr.as_str(), p.sub.as_deref()) {
            ("displayname", None) => "g.display_name_folded",
            ("externalid", None) => "g.external_id",
            ("id", None) => "g.id",
            ("meta", Some("created")) => "g.created_at",
            ("meta", Some("lastmodified")) => "g.updated_at",
            _ => return None,
        })
    });
    order_clause(col, descending, "g")
}

fn order_clause(col: Option<&str>, descending: bool, t: &str) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    match col {
        // NULLs last on both backends, then a stable tie-break.
        Some(c) => {
            format!(" ORDER BY ({c} IS NULL) ASC, {c} {dir}, {t}.created_at ASC, {t}.id ASC")
        }
        None => format!(" ORDER BY {t}.created_at {dir}, {t}.id {dir}"),
    }
}

/// Rewrites `?` into `$n` for PostgreSQL (our SQL never holds a literal `?`: values are bound).
fn placeholders(conn: &DbConn, text: &str) -> String {
    if !matches!(conn, DbConn::Pg(_)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn boxed(
    conn: &DbConn,
    sql: Sql,
) -> diesel::query_builder::BoxedSqlQuery<
    'static,
    <DbConn as Connection>::Backend,
    diesel::query_builder::SqlQuery,
> {
    let text = placeholders(conn, &sql.text);
    let mut q = diesel::sql_query(text).into_boxed::<<DbConn as Connection>::Backend>();
    for b in sql.binds {
        q = match b {
            Bind::Text(s) => q.bind::<Text, _>(s),
            Bind::Int(i) => q.bind::<BigInt, _>(i),
            Bind::Bool(v) => q.bind::<Bool, _>(v),
        };
    }
    q
}

/// Runs `sql` with its binds and loads rows.
pub fn load<T>(conn: &mut DbConn, sql: Sql) -> Result<Vec<T>, diesel::result::Error>
where
    T: QueryableByName<<DbConn as Connection>::Backend> + 'static,
{
    boxed(conn, sql).load::<T>(conn)
}

/// Runs a statement (e.g. a multi-row INSERT) with its binds.
pub fn execute(conn: &mut DbConn, sql: Sql) -> Result<usize, diesel::result::Error> {
    boxed(conn, sql).execute(conn)
}

/// `users u` rows SCIM sees in an org (break-glass accounts are not SCIM's).
pub fn visible_users(org: &OrgId) -> Sql {
    let mut cond = Sql::default();
    cond.push("u.org_id = ")
        .bind(Bind::Text(org.to_string()))
        .push(" AND u.is_break_glass = ")
        .bind(Bind::Bool(false));
    cond
}

#[derive(QueryableByName)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// `SELECT … FROM <from> WHERE <cond> <order> LIMIT/OFFSET`, plus the exact total.
#[allow(clippy::too_many_arguments)]
pub fn page<T>(
    conn: &mut DbConn,
    select: &str,
    from: &str,
    cond: Sql,
    order: &str,
    offset: i64,
    limit: i64,
    known_total: Option<i64>,
) -> Result<(i64, Vec<T>), diesel::result::Error>
where
    T: QueryableByName<<DbConn as Connection>::Backend> + 'static,
{
    let total = match known_total {
        Some(n) => n,
        None => {
            let mut count = Sql::default();
            count
                .push(&format!("SELECT COUNT(*) AS n FROM {from} WHERE "))
                .append(cond.clone());
            load::<Count>(conn, count)?
                .first()
                .map(|c| c.n)
                .unwrap_or(0)
        }
    };
    if limit == 0 || offset >= total {
        return Ok((total, Vec::new()));
    }
    let mut q = Sql::default();
    q.push(&format!("SELECT {select} FROM {from} WHERE "))
        .append(cond)
        .push(order)
        .push(" LIMIT ");
    q.bind(Bind::Int(limit))
        .push(" OFFSET ")
        .bind(Bind::Int(offset));
    Ok((total, load::<T>(conn, q)?))
}

#[cfg(test)]
mod tests {
    use super::super::filter::parse;
    use super::*;

    #[test]
    fn indexed_columns_and_side_table() {
        let s = user_filter("o", &parse(r#"userName eq "Alice@X.com""#).unwrap()).unwrap();
        assert_eq!(s.text, "u.user_name_folded = ?");
        assert!(matches!(&s.binds[0], Bind::Text(t) if t == "alice@x.com"));
        let s = user_filter("o", &parse(r#"externalId eq "AbC""#).unwrap()).unwrap();
        assert!(
            matches!(&s.binds[0], Bind::Text(t) if t == "AbC"),
            "externalId is case-exact"
        );
        let s = user_filter(
            "o",
            &parse(r#"emails[type eq "work"].value eq "A@x.com""#).unwrap(),
        )
        .unwrap();
        assert!(s.text.contains("a.root = ?") && s.text.contains("a.ekey IN"));
        let s = user_filter("o", &parse(r#"title co "50%_off\\""#).unwrap()).unwrap();
        assert!(s
            .binds
            .iter()
            .any(|b| matches!(b, Bind::Text(t) if t == "%50\\%\\_off\\\\%")));
        assert!(user_filter("o", &parse(r#"nosuch eq "x""#).unwrap()).is_err());
        assert!(user_filter("o", &parse(r#"active gt true"#).unwrap()).is_err());
        assert!(user_filter("o", &parse(r#"meta.created gt "yesterday""#).unwrap()).is_err());
        assert!(group_filter("o", &parse(r#"title eq "x""#).unwrap()).is_err());
        let s = group_filter(
            "o",
            &parse(r#"displayName eq "Eng" and members[value eq "u1"]"#).unwrap(),
        )
        .unwrap();
        assert!(s.text.contains("g.display_name_folded = ?") && s.text.contains("memberships"));
    }
}
