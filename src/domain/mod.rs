//! Validated values ("parse, don't validate"): once constructed they are known good.

mod email;
mod names;

pub use email::{DomainName, Email};
pub use names::{fold, Enforcement, Slug, UserSource};
