//! Purges rows that anonymous and finished sign-ins leave behind once nothing can use them:
//! SAML and OIDC sign-in requests and handoffs an hour after they expired (the hour keeps
//! "expired" and "already used" answers exact for a late or replayed response), replay-cache
//! entries once the assertion they guard could no longer pass any time check, and sessions
//! an hour after they expired, went idle or were revoked. Runs at start and every ten
//! minutes; each table is cleared in batches so no write waits long behind it.

use diesel::prelude::*;

use crate::db::schema::{oidc_requests, saml_replay, saml_requests, sessions, sso_handoffs};
use crate::db::DbConn;

/// How long a finished row is kept after it stopped being usable.
pub const GRACE_SECS: i64 = 3600;
/// Rows deleted per write.
pub const BATCH: i64 = 1000;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub saml_requests: usize,
    pub oidc_requests: usize,
    pub replay: usize,
    pub handoffs: usize,
    pub sessions: usize,
    /// The OpenID Provider's requests, codes, refresh tokens, ended grants and deliveries.
    pub provider: usize,
    /// Whether one of the provider's kinds filled its batch (more may be left).
    pub provider_full: bool,
}

impl Purged {
    fn counts(&self) -> [usize; 6] {
        [
            self.saml_requests,
            self.oidc_requests,
            self.replay,
            self.handoffs,
            self.sessions,
            self.provider,
        ]
    }

    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, p: Purged) {
        self.saml_requests += p.saml_requests;
        self.oidc_requests += p.oidc_requests;
        self.replay += p.replay;
        self.handoffs += p.handoffs;
        self.sessions += p.sessions;
        self.provider += p.provider;
        self.provider_full = p.provider_full;
    }
}

/// Deletes up to [`BATCH`] expired rows of each kind; call again while it returns a full batch.
pub fn batch(conn: &mut DbConn, now: i64) -> QueryResult<Purged> {
    let old = now - GRACE_SECS;
    let ids: Vec<String> = saml_requests::table
        .filter(saml_requests::expires_at.lt(old))
        .select(saml_requests::id)
        .limit(BATCH)
        .load(conn)?;
    let saml = diesel::delete(saml_requests::table.filter(saml_requests::id.eq_any(&ids)))
        .execute(conn)?;
    let ids: Vec<String> = oidc_requests::table
        .filter(oidc_requests::expires_at.lt(old))
        .select(oidc_requests::state_hash)
        .limit(BATCH)
        .load(conn)?;
    let oidc = diesel::delete(oidc_requests::table.filter(oidc_requests::state_hash.eq_any(&ids)))
        .execute(conn)?;
    let keys: Vec<(String, String)> = saml_replay::table
        .filter(saml_replay::expires_at.lt(now))
        .select((saml_replay::connection_id, saml_replay::assertion_id))
        .limit(BATCH)
        .load(conn)?;
    let mut replay = 0;
    for (c, a) in &keys {
        replay += diesel::delete(
            saml_replay::table
                .filter(saml_replay::connection_id.eq(c))
                .filter(saml_replay::assertion_id.eq(a)),
        )
        .execute(conn)?;
    }
    let ids: Vec<String> = sso_handoffs::table
        .filter(sso_handoffs::expires_at.lt(old))
        .select(sso_handoffs::id_hash)
        .limit(BATCH)
        .load(conn)?;
    let handoffs = diesel::delete(sso_handoffs::table.filter(sso_handoffs::id_hash.eq_any(&ids)))
        .execute(conn)?;
    let ids: Vec<String> = sessions::table
        .filter(
            sessions::expires_at
                .lt(old)
                .or(sessions::revoked_at.lt(old))
                .or((sessions::last_seen_at + sessions::idle_timeout_secs).lt(old)),
        )
        .select(sessions::id_hash)
        .limit(BATCH)
        .load(conn)?;
    let sessions =
        diesel::delete(sessions::table.filter(sessions::id_hash.eq_any(&ids))).execute(conn)?;
    // Secrets shown once that nobody came to see (a handful at most: no batch needed).
    crate::admin::once::purge(conn, now)?;
    // Form ids of admin pages (a few per admin change).
    crate::admin::submit::purge(conn, now)?;
    let (provider, provider_full) = crate::provider::grants::purge(conn, old, BATCH)?;
    Ok(Purged {
        saml_requests: saml,
        oidc_requests: oidc,
        replay,
        handoffs,
        sessions,
        provider,
        provider_full,
    })
}

/// One pass: batches (each its own write) until nothing expired is left.
pub async fn all(db: &crate::db::Db, now: i64) -> Result<Purged, crate::db::DbError> {
    let mut total = Purged::default();
    loop {
        let p = db
            .write(move |c| batch(c, now).map_err(crate::db::DbError::from))
            .await?;
        total += p;
        if !p.provider_full && !p.counts()[..5].iter().any(|n| *n as i64 == BATCH) {
            return Ok(total);
        }
    }
}

/// At start and every ten minutes, for as long as the process runs.
pub fn spawn(db: crate::db::Db) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            match all(&db, crate::clock::now()).await {
                Ok(p) if p.total() > 0 => tracing::info!(
                    saml_requests = p.saml_requests,
                    oidc_requests = p.oidc_requests,
                    replay = p.replay,
                    handoffs = p.handoffs,
                    sessions = p.sessions,
                    provider = p.provider,
                    "purged expired sign-in rows"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "purge of expired sign-in rows failed; retrying in ten minutes")
                }
            }
        }
    });
}
