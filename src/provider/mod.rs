//! gatehouse as an OpenID Provider to the apps behind it (issue 19): the apps (OIDC clients)
//! registered with it. The endpoints build on these.

pub mod apps;
