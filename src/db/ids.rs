//! Typed ids: a `UserId` cannot be passed where an `OrgId` is expected. Stored as TEXT (UUID).

macro_rules! typed_id {
    ($($name:ident),* $(,)?) => {$( typed_id!(@one $name, uuid::Uuid::new_v4()); )*};
    (time_ordered: $($name:ident),* $(,)?) => {$( typed_id!(@one $name, uuid::Uuid::now_v7()); )*};
    (@one $name:ident, $make:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new() -> Self {
                $name($make.to_string())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(
    OrgId,
    DomainId,
    RoleId,
    MappingId,
    ScimTokenId,
    AdminId,
    KeyId
);

// Rows created in bulk get time-ordered ids (UUIDv7, ordered within the process): a new
// row's key lands next to the previous one in every index that holds the id (the users'
// primary key, memberships, the attribute rows, the audit log) instead of on a random page,
// so a batch of creates touches a few pages rather than one per index per row. Nothing relies
// on these ids being unguessable: every lookup is scoped to the caller's organization.
typed_id!(time_ordered: UserId, GroupId, AuditId);
