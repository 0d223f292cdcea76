//! Apps: the OpenID Connect clients that sign users in through gatehouse. A confidential app
//! has a client secret (256 random bits, shown once, kept as its SHA-256; after a rotation the
//! previous secret stays valid for an overlap); a public one (a SPA or native app) has none and
//! must use PKCE. Redirect URIs are matched exactly, so they are checked strictly here: an
//! absolute `https` URI (plain `http` only to a loopback address, RFC 8252), no fragment, no
//! user info. An app may be limited to some orgs.

use diesel::prelude::*;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::crypto::{random_token, sha256_hex};
use crate::db::ids::OrgId;
use crate::db::schema::oidc_apps;
use crate::db::DbConn;
use crate::identity::{conflict_on_unique, IdentityError, Result};

/// Signing algorithms an app's ID tokens may use.
pub const ID_TOKEN_ALGS: &[&str] = &["RS256", "ES256"];
/// How long the previous secret keeps working after a rotation, unless told otherwise.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 3600;
/// The longest overlap a rotation may keep.
pub const MAX_OVERLAP_SECS: i64 = 30 * 86_400;
/// Redirect URIs one app may register.
const MAX_URIS: usize = 20;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oidc_apps)]
pub struct App {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub client_id: String,
    pub public: bool,
    secret_hash: Option<String>,
    previous_secret_hash: Option<String>,
    pub previous_secret_until: Option<i64>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    pub backchannel_logout_uri: Option<String>,
    orgs: Option<String>,
    pub id_token_alg: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl App {
    pub fn redirect_uris(&self) -> Vec<String> {
        serde_json::from_str(&self.redirect_uris).unwrap_or_default()
    }

    pub fn post_logout_redirect_uris(&self) -> Vec<String> {
        serde_json::from_str(&self.post_logout_redirect_uris).unwrap_or_default()
    }

    /// The orgs whose users may sign in to it (`None`: every org).
    pub fn orgs(&self) -> Option<Vec<String>> {
        self.orgs
            .as_deref()
            .map(|o| serde_json::from_str(o).unwrap_or_default())
    }

    /// Whether `uri` is one of the app's redirect URIs: exactly, or for a plain-http loopback
    /// one with any port (RFC 8252 §7.3: native apps listen on an ephemeral port).
    pub fn accepts_redirect(&self, uri: &str) -> bool {
        self.redirect_uris()
            .iter()
            .any(|r| r == uri || same_but_loopback_port(r, uri))
    }

    /// Whether the app is a native one that receives its code on a loopback address: nothing
    /// proves which program listens there, so the user confirms every sign-in (RFC 8252 §8.6).
    pub fn loopback_redirect(&self, uri: &str) -> bool {
        self.public && url::Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && is_loopback(&u))
    }

    pub fn allows_org(&self, org: &OrgId) -> bool {
        self.orgs()
            .is_none_or(|orgs| orgs.iter().any(|o| o == org.as_str()))
    }

    /// Whether `secret` is this app's client secret (or, during the overlap after a
    /// rotation, its previous one). Compared in constant time.
    pub fn secret_matches(&self, secret: &str, now: i64) -> bool {
        let given = sha256_hex(secret);
        let is = |h: &Option<String>| {
            h.as_deref()
                .is_some_and(|h| bool::from(h.as_bytes().ct_eq(given.as_bytes())))
        };
        let current = is(&self.secret_hash);
        let previous =
            is(&self.previous_secret_hash) && self.previous_secret_until.is_some_and(|t| now < t);
        current | previous
    }

    /// What `app show --json` and the audit log say of it (never a secret).
    pub fn describe(&self, org_slugs: &[String]) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "client_id": self.client_id,
            "type": if self.public { "public" } else { "confidential" },
            "redirect_uris": self.redirect_uris(),
            "post_logout_redirect_uris": self.post_logout_redirect_uris(),
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "orgs": if self.orgs.is_some() { serde_json::json!(org_slugs) } else { serde_json::json!("all") },
            "id_token_alg": self.id_token_alg,
            "enabled": self.enabled,
            "previous_secret_until": self.previous_secret_until,
        })
    }
}

/// What an operator gives for a new app, or for a change (`None`: unchanged).
#[derive(Debug, Default, Clone)]
pub struct AppSpec {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `Some(None)` removes it.
    pub backchannel_logout_uri: Option<Option<String>>,
    /// `Some(None)`: every org.
    pub orgs: Option<Option<Vec<OrgId>>>,
    pub id_token_alg: Option<String>,
    pub enabled: Option<bool>,
}

/// A new app and, for a confidential one, its client secret (the only time it exists in
/// clear).
#[derive(Debug, Serialize)]
pub struct Created {
    pub client_id: String,
    pub client_secret: Option<String>,
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// `registered` and `given` are the same plain-http loopback URI but for the port.
fn same_but_loopback_port(registered: &str, given: &str) -> bool {
    let (Ok(mut r), Ok(mut g)) = (url::Url::parse(registered), url::Url::parse(given)) else {
        return false;
    };
    if r.scheme() != "http"
        || !is_loopback(&r)
        || g.fragment().is_some()
        || !g.username().is_empty()
    {
        return false;
    }
    let _ = r.set_port(None);
    let _ = g.set_port(None);
    r == g
}

/// An exact-match URI an app registers: `https`, or `http` to a loopback address only; no
/// fragment, no user info.
pub fn check_uri(what: &str, uri: &str) -> Result<String> {
    let bad = |why: &str| IdentityError::Invalid(format!("{what} `{uri}`: {why}"));
    // What the parser would quietly drop or reinterpret (tabs, line breaks, `\` as `/`)
    // would make the stored text say something other than what is matched.
    if uri
        .trim()
        .chars()
        .any(|c| c.is_control() || c == '\\' || c.is_whitespace())
    {
        return Err(bad("no spaces, control characters or backslashes"));
    }
    let parsed = url::Url::parse(uri.trim()).map_err(|_| bad("not an absolute URL"))?;
    if parsed.fragment().is_some() {
        return Err(bad("a redirect URI has no #fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("no user name or password in the URL"));
    }
    let loopback = is_loopback(&parsed);
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(bad("plain http only to localhost or a loopback address")),
        _ => return Err(bad("https only")),
    }
    // Stored as parsed (host in ASCII, default port dropped): what is shown is what matches.
    Ok(parsed.to_string())
}

fn check_uris(what: &str, uris: &[String], at_least_one: bool) -> Result<String> {
    if at_least_one && uris.is_empty() {
        return Err(IdentityError::Invalid(format!(
            "an app needs at least one {what}"
        )));
    }
    if uris.len() > MAX_URIS {
        return Err(IdentityError::Invalid(format!(
            "at most {MAX_URIS} of {what}"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for u in uris {
        let u = check_uri(what, u)?;
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(serde_json::to_string(&out).unwrap_or_else(|_| "[]".into()))
}

/// 1-63 lower-case letters, digits and dashes, not starting with a dash.
pub fn valid_slug(slug: &str) -> bool {
    (1..=63).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
}

fn check_slug(slug: &str) -> Result<()> {
    if valid_slug(slug) {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "app slug `{slug}`: 1-63 lower-case letters, digits and dashes"
        )))
    }
}

fn check_alg(alg: &str) -> Result<String> {
    ID_TOKEN_ALGS
        .iter()
        .find(|a| a.eq_ignore_ascii_case(alg))
        .map(|a| a.to_string())
        .ok_or_else(|| IdentityError::Invalid(format!("--id-token-alg {alg}: RS256 or ES256")))
}

fn orgs_json(orgs: &Option<Vec<OrgId>>) -> Option<String> {
    orgs.as_ref().map(|o| {
        serde_json::to_string(&o.iter().map(OrgId::as_str).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into())
    })
}

/// Registers an app.
pub fn add(
    conn: &mut DbConn,
    slug: &str,
    public: bool,
    spec: &AppSpec,
    now: i64,
) -> Result<(App, Created)> {
    check_slug(slug)?;
    let name = spec.name.clone().unwrap_or_else(|| slug.to_string());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(IdentityError::Invalid(
            "an app's name is 1-200 characters".into(),
        ));
    }
    let redirect = check_uris(
        "redirect URI",
        spec.redirect_uris.as_deref().unwrap_or(&[]),
        true,
    )?;
    let post_logout = check_uris(
        "post-logout redirect URI",
        spec.post_logout_redirect_uris.as_deref().unwrap_or(&[]),
        false,
    )?;
    let backchannel = match spec.backchannel_logout_uri.clone().flatten() {
        Some(u) => Some(check_uri("back-channel logout URI", &u)?),
        None => None,
    };
    let alg = check_alg(spec.id_token_alg.as_deref().unwrap_or("RS256"))?;
    let id = uuid::Uuid::now_v7().to_string();
    let client_id = format!("app_{}", uuid::Uuid::new_v4().simple());
    let secret = (!public).then(|| random_token(32));
    diesel::insert_into(oidc_apps::table)
        .values((
            oidc_apps::id.eq(&id),
            oidc_apps::slug.eq(slug),
            oidc_apps::name.eq(name.trim()),
            oidc_apps::client_id.eq(&client_id),
            oidc_apps::public.eq(public),
            oidc_apps::secret_hash.eq(secret.as_deref().map(sha256_hex)),
            oidc_apps::redirect_uris.eq(redirect),
            oidc_apps::post_logout_redirect_uris.eq(post_logout),
            oidc_apps::backchannel_logout_uri.eq(backchannel),
            oidc_apps::orgs.eq(orgs_json(&spec.orgs.clone().flatten())),
            oidc_apps::id_token_alg.eq(alg),
            oidc_apps::enabled.eq(true),
            oidc_apps::created_at.eq(now),
            oidc_apps::updated_at.eq(now),
        ))
        .execute(conn)
        .map_err(|e| conflict_on_unique(e, || format!("an app `{slug}` already exists")))?;
    let app = find(conn, slug)?.ok_or_else(|| IdentityError::NotFound(slug.into()))?;
    Ok((
        app,
        Created {
            client_id,
            client_secret: secret,
        },
    ))
}

pub fn find(conn: &mut DbConn, slug: &str) -> Result<Option<App>> {
    Ok(oidc_apps::table
        .filter(oidc_apps::slug.eq(slug))
        .select(App::as_select())
        .first(conn)
        .optional()?)
}

/// The app with this `client_id` (what the authorization and token endpoints are given).
pub fn by_client_id(conn: &mut DbConn, client_id: &str) -> Result<Option<App>> {
    Ok(oidc_apps::table
        .filter(oidc_apps::client_id.eq(client_id))
        .select(App::as_select())
        .first(conn)
        .optional()?)
}

/// The app with this id (a grant's), if it still exists.
pub fn all_by_id(conn: &mut DbConn, id: &str) -> Result<Option<App>> {
    Ok(oidc_apps::table
        .find(id)
        .select(App::as_select())
        .first(conn)
        .optional()?)
}

pub fn get(conn: &mut DbConn, slug: &str) -> Result<App> {
    find(conn, slug)?.ok_or_else(|| IdentityError::NotFound(format!("no app `{slug}`")))
}

pub fn list(conn: &mut DbConn) -> Result<Vec<App>> {
    Ok(oidc_apps::table
        .order(oidc_apps::slug.asc())
        .select(App::as_select())
        .load(conn)?)
}

/// Applies `spec`; returns the app before and after.
pub fn update(conn: &mut DbConn, slug: &str, spec: &AppSpec, now: i64) -> Result<(App, App)> {
    let before = get(conn, slug)?;
    let name = spec.name.clone().unwrap_or_else(|| before.name.clone());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(IdentityError::Invalid(
            "an app's name is 1-200 characters".into(),
        ));
    }
    let redirect = match &spec.redirect_uris {
        Some(u) => check_uris("redirect URI", u, true)?,
        None => before.redirect_uris.clone(),
    };
    let post_logout = match &spec.post_logout_redirect_uris {
        Some(u) => check_uris("post-logout redirect URI", u, false)?,
        None => before.post_logout_redirect_uris.clone(),
    };
    let backchannel = match &spec.backchannel_logout_uri {
        Some(Some(u)) => Some(check_uri("back-channel logout URI", u)?),
        Some(None) => None,
        None => before.backchannel_logout_uri.clone(),
    };
    let orgs = match &spec.orgs {
        Some(o) => orgs_json(o),
        None => before.orgs.clone(),
    };
    let alg = match &spec.id_token_alg {
        Some(a) => check_alg(a)?,
        None => before.id_token_alg.clone(),
    };
    diesel::update(oidc_apps::table.find(&before.id))
        .set((
            oidc_apps::name.eq(name.trim()),
            oidc_apps::redirect_uris.eq(redirect),
            oidc_apps::post_logout_redirect_uris.eq(post_logout),
            oidc_apps::backchannel_logout_uri.eq(backchannel),
            oidc_apps::orgs.eq(orgs),
            oidc_apps::id_token_alg.eq(alg),
            oidc_apps::enabled.eq(spec.enabled.unwrap_or(before.enabled)),
            oidc_apps::updated_at.eq(now),
        ))
        .execute(conn)?;
    let after = get(conn, slug)?;
    Ok((before, after))
}

/// A new client secret; the current one keeps working for `overlap_secs` (0: ends now).
pub fn rotate_secret(
    conn: &mut DbConn,
    slug: &str,
    overlap_secs: i64,
    now: i64,
) -> Result<(App, String)> {
    let app = get(conn, slug)?;
    if app.public {
        return Err(IdentityError::Invalid(format!(
            "`{slug}` is a public app: it has no client secret"
        )));
    }
    if !(0..=MAX_OVERLAP_SECS).contains(&overlap_secs) {
        return Err(IdentityError::Invalid("the overlap is 0 to 30 days".into()));
    }
    let secret = random_token(32);
    diesel::update(oidc_apps::table.find(&app.id))
        .set((
            oidc_apps::secret_hash.eq(Some(sha256_hex(&secret))),
            oidc_apps::previous_secret_hash.eq(app.secret_hash.clone()),
            oidc_apps::previous_secret_until.eq((overlap_secs > 0).then_some(now + overlap_secs)),
            oidc_apps::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok((get(conn, slug)?, secret))
}

/// Removes an app: its clients' secrets stop working at once.
pub fn remove(conn: &mut DbConn, slug: &str) -> Result<App> {
    let app = get(conn, slug)?;
    diesel::delete(oidc_apps::table.find(&app.id)).execute(conn)?;
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_stored_as_they_are_matched() {
        assert_eq!(
            check_uri("redirect URI", "https://Bücher.example:443/cb").unwrap(),
            "https://xn--bcher-kva.example/cb"
        );
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_without_fragments() {
        for ok in [
            "https://app.example.com/callback",
            "http://localhost:3000/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
        ] {
            assert!(check_uri("redirect URI", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "https://user:pw@app.example.com/cb",
            "https://evil.example\\@good.example/cb",
            "https://app.example.com/c\tb",
            "javascript:alert(1)",
            "/relative",
            "http://localhost.evil.example/cb",
        ] {
            assert!(check_uri("redirect URI", bad).is_err(), "{bad}");
        }
    }
}
