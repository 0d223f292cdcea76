//! The identity core: organizations, their domains, users, roles and group→role mappings,
//! SCIM tokens, instance admins, tombstones and signing keys. Every function takes `&mut
//! DbConn` so it runs inside the caller's transaction, next to its audit event.

pub mod admins;
pub mod breakglass;
pub mod domain_check;
pub mod domains;
pub mod enforcement;
pub mod keys;
pub mod orgs;
pub mod roles;
pub mod scim_tokens;
pub mod setup_links;
pub mod tombstones;
pub mod users;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::db::DbError;
use crate::http::errors::AppError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<DieselError> for IdentityError {
    fn from(e: DieselError) -> Self {
        IdentityError::Db(DbError::Query(e))
    }
}

impl From<IdentityError> for AppError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(m) => AppError::BadRequest(m),
            IdentityError::Conflict(m) => AppError::Conflict(m),
            IdentityError::NotFound(_) => AppError::NotFound,
            IdentityError::Db(e) => e.into(),
            IdentityError::Other(e) => AppError::Internal(e),
        }
    }
}

/// Turns a unique-constraint violation into a `Conflict` with `message`.
pub fn conflict_on_unique(e: DieselError, message: impl FnOnce() -> String) -> IdentityError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            IdentityError::Conflict(message())
        }
        other => other.into(),
    }
}

pub type Result<T> = std::result::Result<T, IdentityError>;
