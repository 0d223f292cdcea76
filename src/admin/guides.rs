//! Setup guides, one per IdP, in the order its console asks and in its own screen and field
//! names: the values gatehouse gives the IdP first (most consoles want the ACS URL before they
//! show their metadata), then what to bring back, then provisioning by SCIM.

/// The IdPs a guided setup starts from: (key, name shown, protocol).
pub const CHOICES: &[(&str, &str, &str)] = &[
    ("okta", "Okta", "saml"),
    ("entra", "Microsoft Entra ID", "saml"),
    ("google", "Google Workspace", "saml"),
    ("onelogin", "OneLogin", "saml"),
    ("jumpcloud", "JumpCloud", "saml"),
    ("saml", "Another SAML 2.0 IdP", "saml"),
    ("oidc", "Another OpenID Connect IdP", "oidc"),
];

/// What gatehouse gives the IdP, under the IdP's own label: (our field id, the IdP's label).
/// Field ids: `sp-entity-id`, `acs-url`, `metadata-url`, `login-url`, `redirect-uri`.
pub struct Guide {
    pub idp: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    /// Steps at the IdP before its metadata can be fetched, in its words.
    pub steps: &'static [&'static str],
    /// Where the IdP shows what to paste back here.
    pub bring_back: &'static str,
    /// Provisioning by SCIM at the IdP (the base URL and a token come from the SCIM page).
    pub scim: &'static [&'static str],
}

pub fn for_preset(kind: &str, preset: Option<&str>) -> Guide {
    match (kind, preset) {
        ("saml", Some("okta")) => Guide {
            idp: "Okta",
            labels: &[("acs-url", "Single sign-on URL"), ("sp-entity-id", "Audience URI (SP Entity ID)"), ("login-url", "(optional) Initiate login URI")],
            steps: &[
                "Admin Console → Applications → Applications → Create App Integration → SAML 2.0 → Next.",
                "General Settings: App name (e.g. the name of your app) → Next.",
                "Configure SAML: Single sign-on URL and Audience URI (SP Entity ID) from the table; keep \"Use this for Recipient URL and Destination URL\" ticked; Name ID format: Persistent (or EmailAddress); Application username: Email.",
                "Attribute Statements: email = user.email, firstName = user.firstName, lastName = user.lastName. Group Attribute Statements: name groups, filter Matches regex .* (if roles come from Okta groups).",
                "Next → Finish. Assignments tab: assign the people or groups who may sign in.",
            ],
            bring_back: "Sign On tab → SAML 2.0 → Metadata details → Metadata URL: paste that URL below (or open it and paste the XML).",
            scim: &[
                "General tab → App Settings → Edit → Provisioning: SCIM → Save.",
                "Provisioning tab → Integration → Edit: SCIM connector base URL = the SCIM base URL; Unique identifier field for users = userName; Supported provisioning actions: Push New Users, Push Profile Updates, Push Groups; Authentication Mode: HTTP Header; Authorization = the token. Test Connector Configuration → Save.",
                "Provisioning → To App → Edit: enable Create Users, Update User Attributes, Deactivate Users → Save. Push Groups tab: push the groups whose roles matter.",
            ],
        },
        ("saml", Some("entra")) => Guide {
            idp: "Microsoft Entra ID",
            labels: &[("sp-entity-id", "Identifier (Entity ID)"), ("acs-url", "Reply URL (Assertion Consumer Service URL)"), ("login-url", "Sign on URL")],
            steps: &[
                "Microsoft Entra admin center → Identity → Applications → Enterprise applications → New application → Create your own application: a name, \"Integrate any other application you don't find in the gallery (Non-gallery)\" → Create.",
                "Single sign-on → SAML → Basic SAML Configuration → Edit: Identifier (Entity ID), Reply URL (Assertion Consumer Service URL) and Sign on URL from the table → Save.",
                "Attributes & Claims: keep emailaddress, givenname and surname; + Add a group claim → Security groups (if roles come from Entra groups).",
                "Users and groups → Add user/group: who may sign in.",
            ],
            bring_back: "Single sign-on → SAML Certificates → App Federation Metadata Url: paste that URL below.",
            scim: &[
                "Provisioning → New configuration (or Get started) → Provisioning Mode: Automatic.",
                "Admin Credentials: Tenant URL = the SCIM base URL; Secret Token = the token → Test Connection → Save (Create).",
                "Mappings: keep Provision Microsoft Entra ID Users and Groups; Settings → Scope: Sync only assigned users and groups → Start provisioning.",
            ],
        },
        ("saml", Some("google")) => Guide {
            idp: "Google Workspace",
            labels: &[("acs-url", "ACS URL"), ("sp-entity-id", "Entity ID"), ("login-url", "Start URL (optional)")],
            steps: &[
                "Admin console → Apps → Web and mobile apps → Add app → Add custom SAML app: App name → Continue.",
                "Google Identity Provider details: Download Metadata (keep the file for the box below) → Continue.",
                "Service provider details: ACS URL, Entity ID and Start URL from the table; Name ID format: EMAIL; Name ID: Basic Information › Primary email → Continue.",
                "Attribute mapping: Primary email → email, First name → firstName, Last name → lastName; Group membership (optional): the groups whose roles matter, App attribute groups → Finish.",
                "User access: ON for everyone, or for the organizational units that may sign in.",
            ],
            bring_back: "Paste the metadata file downloaded in step 2 below (Google shows no metadata URL).",
            scim: &[
                "Google Workspace does not provision custom SAML apps by SCIM (its automatic provisioning is only for apps in its catalog): users are created at their first sign-in, and their groups come with each sign-in.",
            ],
        },
        ("saml", Some("onelogin")) => Guide {
            idp: "OneLogin",
            labels: &[("sp-entity-id", "Audience (EntityID)"), ("acs-url", "Recipient, ACS (Consumer) URL and ACS (Consumer) URL Validator"), ("login-url", "Login URL")],
            steps: &[
                "Administration → Applications → Applications → Add App: search \"SAML Custom Connector (Advanced)\" — or \"SCIM Provisioner with SAML (SCIM v2 Enterprise)\" to provision by SCIM too — → Save.",
                "Configuration tab: Audience (EntityID), Recipient, ACS (Consumer) URL Validator, ACS (Consumer) URL and Login URL from the table; SAML nameID format: Email; SAML signature element: Both → Save.",
                "Parameters tab: add email, firstName, lastName and groups, each with \"Include in SAML assertion\".",
                "Users: give the app to the people who may sign in (directly or by role).",
            ],
            bring_back: "SSO tab → Issuer URL: paste that metadata URL below (or More Actions → SAML Metadata, and paste the file).",
            scim: &[
                "With the \"SCIM Provisioner with SAML (SCIM v2 Enterprise)\" connector: Configuration tab → SCIM Base URL = the SCIM base URL; SCIM Bearer Token = the token → Enable API connection.",
                "Provisioning tab: Enable provisioning; decide Create user, Delete user and Update user → Save.",
            ],
        },
        ("saml", Some("jumpcloud")) => Guide {
            idp: "JumpCloud",
            labels: &[("sp-entity-id", "SP Entity ID"), ("acs-url", "ACS URLs → Default URL"), ("login-url", "Login URL")],
            steps: &[
                "Admin Portal → SSO Applications → + Add New Application → Custom Application → Next: tick Manage Single Sign-On (SSO) → Configure SSO with SAML (and Export users to this app (Identity Management) to provision by SCIM) → a display label → Save Application → Configure Application.",
                "SSO tab: IdP Entity ID (a name unique to this app, e.g. your company's); SP Entity ID and Default URL (under ACS URLs) and Login URL from the table; SAMLSubject NameID: email; SAMLSubject NameID Format: urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress; Signature Algorithm: RSA-SHA256; Sign: Assertion.",
                "Attributes: email → email, firstName → firstname, lastName → lastname; Group Attributes: include group attribute, name groups → save.",
                "User Groups tab: bind the groups who may sign in.",
            ],
            bring_back: "SSO tab → Export Metadata: paste the downloaded file below.",
            scim: &[
                "Identity Management tab: API Type SCIM API, SCIM Version SCIM 2.0; Base URL = the SCIM base URL; Token Key = the token → Test Connection → Activate.",
                "Group management: enable it to send groups; bind the user groups to provision.",
            ],
        },
        ("oidc", _) => Guide {
            idp: "your OpenID Connect IdP",
            labels: &[("redirect-uri", "Redirect URI (sign-in redirect URI, callback URL)"), ("login-url", "Initiate login URI (optional)")],
            steps: &[
                "Register a confidential web application (authorization code flow) with the redirect URI from the table; scopes openid, email and profile.",
                "If app roles come from the IdP's groups, add a groups claim to the ID token (its name goes below, default groups).",
                "Allow the people who may sign in to use the application.",
            ],
            bring_back: "Enter the IdP's issuer URL (its /.well-known/openid-configuration is read), the client ID and the client secret below.",
            scim: &[
                "If the IdP provisions by SCIM 2.0: base URL = the SCIM base URL, authorization = Bearer token. gatehouse serves Users (create, replace, PATCH, deactivate, delete), Groups with members, filters on userName and externalId, and Bulk.",
            ],
        },
        _ => Guide {
            idp: "your SAML IdP",
            labels: &[("sp-entity-id", "SP entity ID (audience)"), ("acs-url", "ACS URL (HTTP-POST)"), ("metadata-url", "SP metadata URL"), ("login-url", "Sign-on URL")],
            steps: &[
                "Create a SAML 2.0 application with the SP entity ID and ACS URL from the table (or give it the SP metadata URL).",
                "NameID: persistent (or the e-mail address); attributes email, firstName, lastName and groups (if roles come from IdP groups); sign the response or the assertion with RSA-SHA256.",
                "Allow the people who may sign in to use the application.",
            ],
            bring_back: "Paste the IdP's metadata XML below, or give its metadata URL.",
            scim: &[
                "If the IdP provisions by SCIM 2.0: base URL = the SCIM base URL, authorization = Bearer token. gatehouse serves Users (create, replace, PATCH, deactivate, delete), Groups with members, filters on userName and externalId, and Bulk.",
            ],
        },
    }
}
