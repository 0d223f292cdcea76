//! The SAML 2.0 service provider: per-connection metadata, SP-initiated requests, and the ACS
//! that validates responses (with samael, plus the checks samael leaves to us).

pub mod certificates;
pub mod config;
pub mod refresh;
pub mod routes;
pub mod validate;

pub use routes::routes;
