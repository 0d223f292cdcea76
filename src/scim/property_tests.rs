//! Property tests: the filter parser, the filter-to-SQL compiler and the PATCH engine take
//! arbitrary input without panicking (seeded, so a failure reproduces).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::{filter, patch, query, schema::Resource};

const PIECES: &[&str] = &[
    "userName",
    "eq",
    "ne",
    "co",
    "sw",
    "ew",
    "gt",
    "ge",
    "lt",
    "le",
    "pr",
    "and",
    "or",
    "not",
    "(",
    ")",
    "[",
    "]",
    "].",
    ".",
    "\"x\"",
    "\"\\\"\"",
    "\"",
    "\\",
    "emails",
    "value",
    "type",
    "members",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "meta.created",
    "\"2011-05-13T04:42:34Z\"",
    "true",
    "false",
    "null",
    "1",
    "-1.5e3",
    "name.givenName",
    " ",
    "  ",
    "%",
    "_",
    "'",
    "é",
    "\u{0}",
    "displayName",
    "a.b.c",
    "$ref",
    ":",
    "urn:",
    "title",
];

fn random_text(rng: &mut StdRng) -> String {
    let n = rng.gen_range(0..16);
    let mut s = String::new();
    for _ in 0..n {
        if rng.gen_bool(0.1) {
            s.push(char::from_u32(rng.gen_range(0..0x2FFF)).unwrap_or('?'));
        } else {
            s.push_str(PIECES[rng.gen_range(0..PIECES.len())]);
            if rng.gen_bool(0.7) {
                s.push(' ');
            }
        }
    }
    s
}

/// A syntactically valid filter (then sometimes mutated, to explore near-misses).
fn random_filter(rng: &mut StdRng, depth: u32) -> String {
    const ATTRS: &[&str] = &[
        "userName",
        "title",
        "emails.value",
        "meta.lastModified",
        "active",
        "displayName",
        "members.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "id",
    ];
    const OPS: &[&str] = &["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];
    const VALUES: &[&str] = &[
        "\"x\"",
        "true",
        "false",
        "null",
        "42",
        "\"2011-05-13T04:42:34Z\"",
        "\"50%_\\\\\"",
    ];
    match rng.gen_range(0..if depth > 3 { 2 } else { 6 }) {
        0 => format!(
            "{} {} {}",
            ATTRS[rng.gen_range(0..ATTRS.len())],
            OPS[rng.gen_range(0..OPS.len())],
            VALUES[rng.gen_range(0..VALUES.len())]
        ),
        1 => format!("{} pr", ATTRS[rng.gen_range(0..ATTRS.len())]),
        2 => format!(
            "({}) and {}",
            random_filter(rng, depth + 1),
            random_filter(rng, depth + 1)
        ),
        3 => format!(
            "{} or not ({})",
            random_filter(rng, depth + 1),
            random_filter(rng, depth + 1)
        ),
        4 => format!(
            "emails[type eq \"work\" and {}]",
            random_filter(rng, depth + 1).replace("emails.", "")
        ),
        _ => format!(
            "emails[type eq \"work\"].value {} \"a@b.c\"",
            OPS[rng.gen_range(0..OPS.len())]
        ),
    }
}

fn mutate(rng: &mut StdRng, s: String) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return s;
    }
    let i = rng.gen_range(0..chars.len());
    let mut out: Vec<char> = chars.clone();
    match rng.gen_range(0..3) {
        0 => {
            out.remove(i);
        }
        1 => out.insert(
            i,
            ['"', '(', ')', '[', ']', ' ', '\\', '.'][rng.gen_range(0..8)],
        ),
        _ => out.truncate(i),
    }
    out.into_iter().collect()
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => json!(rng.gen_range(-5..5)),
        3 => json!(["True", "False", "x", "admin", "[{\"value\":\"r\"}]", ""][rng.gen_range(0..6)]),
        4 => Value::String(random_text(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..3))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..4) {
                let key = [
                    "value",
                    "display",
                    "primary",
                    "type",
                    "givenName",
                    "active",
                    "emails",
                    "id",
                    "members",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                ][rng.gen_range(0..10)];
                m.insert(key.to_string(), random_json(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

#[test]
fn the_filter_parser_and_compiler_never_panic() {
    let mut rng = StdRng::seed_from_u64(7461);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let text = match rng.gen_range(0..3) {
            0 => random_text(&mut rng),
            1 => random_filter(&mut rng, 0),
            _ => {
                let f = random_filter(&mut rng, 0);
                mutate(&mut rng, f)
            }
        };
        if let Ok(f) = filter::parse(&text) {
            parsed += 1;
            let _ = query::user_filter("org", &f);
            let _ = query::group_filter("org", &f);
            let _ = patch::element_matches(&f, &random_json(&mut rng, 0));
        }
    }
    assert!(
        parsed > 100,
        "the generator should also produce valid filters ({parsed})"
    );
}

#[test]
fn the_patch_engine_never_panics() {
    let mut rng = StdRng::seed_from_u64(1844);
    for _ in 0..10_000 {
        let ops: Vec<Value> = (0..rng.gen_range(0..4))
            .map(|_| {
                let mut op = Map::new();
                op.insert(
                    "op".into(),
                    json!(["add", "Replace", "remove", "x", "ADD"][rng.gen_range(0..5)]),
                );
                if rng.gen_bool(0.8) {
                    let path = if rng.gen_bool(0.5) {
                        [
                            "emails[type eq \"work\"].value",
                            "members",
                            "members[value eq \"u1\"]",
                            "name.givenName",
                            "active",
                            "roles",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                            "displayName",
                        ][rng.gen_range(0..9)]
                        .to_string()
                    } else {
                        random_text(&mut rng)
                    };
                    op.insert("path".into(), json!(path));
                }
                if rng.gen_bool(0.8) {
                    op.insert("value".into(), random_json(&mut rng, 0));
                }
                Value::Object(op)
            })
            .collect();
        let body = json!({"Operations": ops});
        if let Ok(parsed) = patch::parse_operations(&body) {
            let mut user = json!({"userName": "u", "emails": [{"value": "a", "type": "work"}]})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let _ = patch::apply(Resource::User, &mut user, &parsed);
            let mut group = json!({"displayName": "g"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let _ = patch::apply(Resource::Group, &mut group, &parsed);
        }
    }
}
