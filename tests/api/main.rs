//! End-to-end tests: the real server on port 0 with a fresh database per test, driven over
//! HTTP, and the real CLI binary. PostgreSQL variants need `GATEHOUSE_TEST_PG_URL` (an admin
//! URL; `scripts/test` starts a private cluster and sets it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod admin_ui;
mod gateway;
mod hardening;
mod helpers;
mod identity;
mod oidc;
mod op;
mod op_django;
mod platform;
mod provider;
mod saml;
mod scim;
mod scim_bulk;
mod sessions;
mod signin;
