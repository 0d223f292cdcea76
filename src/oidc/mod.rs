//! OpenID Connect Relying Party: per-org connections, discovery through the guarded outbound
//! client, authorization code + PKCE, and the account resolution shared with SAML.

pub mod config;
pub mod provider;
pub mod routes;
