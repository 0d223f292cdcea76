//! HTTP plumbing shared by every route group: the per-request context (request id, span,
//! metrics, security headers), the error types of each boundary, and the health endpoints.

pub mod client;
pub mod context;
pub mod errors;
pub mod health;
pub mod metrics;
pub mod pages;
