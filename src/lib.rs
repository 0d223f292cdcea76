//! gatehouse: enterprise sign-in (SAML, OIDC) and SCIM provisioning in front of any web app.
//!
//! Layout: `config` (typed settings), `db` (one diesel connection type over SQLite and
//! PostgreSQL), `http` (middleware, errors, health), `startup` (the actix `App`), `cli`
//! (the operator commands), `telemetry` (tracing).

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod login;
pub mod oidc;
pub mod outbound;
pub mod provider;
pub mod saml;
pub mod scim;
pub mod sso;
pub mod startup;
pub mod telemetry;
