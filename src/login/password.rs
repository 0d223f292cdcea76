//! Password hashing (argon2id) off the async workers, behind a small semaphore: when it is
//! full the request gets 429 at once (password spraying must not starve the server). Unknown
//! accounts are checked against a dummy hash so timing does not reveal which exist.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::http::errors::AppError;

/// Hashes with argon2id at the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum).
pub fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

/// Constant-shape verification: a malformed stored hash counts as a mismatch.
pub fn verify_blocking(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Password policy for accounts we create.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < 12 {
        return Err("passwords must be at least 12 characters".into());
    }
    if password.len() > 1024 {
        return Err("passwords must be at most 1024 bytes".into());
    }
    Ok(())
}

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<String>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> anyhow::Result<Passwords> {
        let dummy = SecretString::from(crate::crypto::random_token(24));
        Ok(Passwords {
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: Arc::new(hash_blocking(&dummy)?),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| AppError::TooManyRequests { retry_after: 1 })?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing task failed: {e}")))
    }

    /// Verifies against each candidate hash; with none, against the dummy hash (same cost).
    /// Returns the index of the first matching candidate.
    pub async fn verify_any(
        &self,
        candidates: Vec<String>,
        password: SecretString,
    ) -> Result<Option<usize>, AppError> {
        let dummy = self.dummy_hash.clone();
        self.run(move || {
            if candidates.is_empty() {
                let _ = verify_blocking(&dummy, &password);
                return None;
            }
            candidates
                .iter()
                .position(|hash| verify_blocking(hash, &password))
        })
        .await
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, AppError> {
        self.run(move || hash_blocking(&password))
            .await?
            .map_err(AppError::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let pw = SecretString::from("correct horse battery staple".to_string());
        let hash = hash_blocking(&pw).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_blocking(&hash, &pw));
        assert!(!verify_blocking(
            &hash,
            &SecretString::from("wrong".to_string())
        ));
        assert!(!verify_blocking("not a hash", &pw));
    }

    #[tokio::test]
    async fn a_full_semaphore_answers_429() {
        let p = Passwords::new(1).unwrap();
        let _held = p.permits.clone().try_acquire_owned().unwrap();
        let err = p
            .verify_any(vec![], SecretString::from("x".to_string()))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::TooManyRequests { .. }));
    }
}
