//! Table definitions, written by hand to match `migrations/` (one set for both backends).

diesel::table! {
    organizations (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        enforcement -> Text,
        jit_enabled -> Bool,
        default_role -> Nullable<Text>,
        session_idle_minutes -> Integer,
        session_max_minutes -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        group_source -> Text,
    }
}

diesel::table! {
    domains (id) {
        id -> Text,
        org_id -> Text,
        domain -> Text,
        verified -> Bool,
        enforce -> Bool,
        created_at -> BigInt,
        dns_token -> Nullable<Text>,
        checked_at -> Nullable<BigInt>,
        check_result -> Nullable<Text>,
        verified_by -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        org_id -> Text,
        user_name -> Text,
        user_name_folded -> Text,
        external_id -> Nullable<Text>,
        email -> Nullable<Text>,
        email_folded -> Nullable<Text>,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        display_name -> Nullable<Text>,
        active -> Bool,
        app_role -> Nullable<Text>,
        is_org_admin -> Bool,
        is_break_glass -> Bool,
        source -> Text,
        password_hash -> Nullable<Text>,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        scim_json -> Nullable<Text>,
        idp_groups -> Nullable<Text>,
        totp_secret_enc -> Nullable<Text>,
        totp_last_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    user_groups (id) {
        id -> Text,
        org_id -> Text,
        display_name -> Text,
        display_name_folded -> Text,
        external_id -> Nullable<Text>,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        scim_json -> Nullable<Text>,
    }
}

diesel::table! {
    user_attrs (ekey, path, value) {
        org_id -> Text,
        user_id -> Text,
        root -> Text,
        path -> Text,
        ekey -> Text,
        value -> Text,
        value_folded -> Text,
    }
}

diesel::table! {
    memberships (group_id, user_id) {
        group_id -> Text,
        user_id -> Text,
        org_id -> Text,
        created_at -> BigInt,
        display -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        chain -> Text,
        org_id -> Nullable<Text>,
        seq -> BigInt,
        occurred_at -> BigInt,
        actor -> Text,
        action -> Text,
        outcome -> Text,
        request_id -> Nullable<Text>,
        payload -> Nullable<Text>,
        payload_hash -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    instance_admins (id) {
        id -> Text,
        email -> Text,
        email_folded -> Text,
        password_hash -> Text,
        totp_secret_enc -> Text,
        totp_last_step -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        org_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        admin_id -> Nullable<Text>,
        auth_method -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        idle_timeout_secs -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        connection_id -> Nullable<Text>,
        setup_link_id -> Nullable<Text>,
    }
}

diesel::table! {
    setup_links (id) {
        id -> Text,
        org_id -> Text,
        token_hash -> Text,
        intents -> Text,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    roles (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        name_folded -> Text,
        rank -> Integer,
        created_at -> BigInt,
    }
}

diesel::table! {
    role_mappings (id) {
        id -> Text,
        org_id -> Text,
        group_key -> Text,
        group_key_folded -> Text,
        role_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    tombstones (id) {
        id -> Text,
        org_id -> Text,
        user_name_folded -> Text,
        email_folded -> Nullable<Text>,
        external_id -> Nullable<Text>,
        deleted_user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    scim_tokens (id) {
        id -> Text,
        org_id -> Text,
        prefix -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    signing_keys (id) {
        id -> Text,
        purpose -> Text,
        algorithm -> Text,
        private_key_enc -> Text,
        public_pem -> Text,
        certificate_pem -> Nullable<Text>,
        created_at -> BigInt,
        not_after -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
        publish_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    connections (id) {
        id -> Text,
        org_id -> Text,
        kind -> Text,
        name -> Text,
        enabled -> Bool,
        config -> Text,
        secret_enc -> Nullable<Text>,
        last_success_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        draft -> Bool,
        tested_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    connection_tests (id) {
        id -> Text,
        connection_id -> Text,
        ok -> Bool,
        cause -> Nullable<Text>,
        detail -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    admin_form_submissions (form_id) {
        form_id -> Text,
        session_hash -> Text,
        result -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    oidc_requests (state_hash) {
        state_hash -> Text,
        connection_id -> Text,
        browser_hash -> Text,
        nonce_enc -> Text,
        verifier_enc -> Text,
        return_to -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
        purpose -> Nullable<Text>,
        test_session -> Nullable<Text>,
    }
}

diesel::table! {
    saml_requests (id) {
        id -> Text,
        connection_id -> Text,
        return_to -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
        purpose -> Nullable<Text>,
        test_session -> Nullable<Text>,
    }
}

diesel::table! {
    saml_replay (connection_id, assertion_id) {
        connection_id -> Text,
        assertion_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    user_identities (connection_id, subject) {
        connection_id -> Text,
        subject -> Text,
        user_id -> Text,
        created_at -> BigInt,
        last_login_at -> BigInt,
        explicit -> Bool,
    }
}

diesel::table! {
    sso_handoffs (id_hash) {
        id_hash -> Text,
        org_id -> Text,
        user_id -> Text,
        connection_id -> Text,
        method -> Text,
        return_to -> Nullable<Text>,
        expires_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    admin_once_results (id) {
        id -> Text,
        session_hash -> Text,
        sealed -> Text,
        expires_at -> BigInt,
    }
}

diesel::joinable!(role_mappings -> roles (role_id));
diesel::joinable!(connections -> organizations (org_id));
diesel::joinable!(user_attrs -> users (user_id));
diesel::joinable!(domains -> organizations (org_id));
diesel::joinable!(users -> organizations (org_id));
diesel::joinable!(user_groups -> organizations (org_id));
diesel::joinable!(memberships -> user_groups (group_id));
diesel::joinable!(memberships -> users (user_id));

diesel::table! {
    scim_user_counts (org_id) {
        org_id -> Text,
        n -> BigInt,
        generation -> BigInt,
    }
}

diesel::table! {
    oidc_apps (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        client_id -> Text,
        public -> Bool,
        secret_hash -> Nullable<Text>,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_until -> Nullable<BigInt>,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        backchannel_logout_uri -> Nullable<Text>,
        orgs -> Nullable<Text>,
        id_token_alg -> Text,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    oidc_auth_requests (id_hash) {
        id_hash -> Text,
        app_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        state -> Nullable<Text>,
        nonce -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        fresh_after -> Nullable<BigInt>,
        stale_session_hash -> Nullable<Text>,
        browser_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    oidc_grants (id) {
        id -> Text,
        app_id -> Text,
        org_id -> Text,
        user_id -> Text,
        session_hash -> Text,
        sid -> Text,
        scope -> Text,
        nonce -> Nullable<Text>,
        auth_time -> BigInt,
        auth_method -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    oidc_codes (code_hash) {
        code_hash -> Text,
        grant_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Nullable<Text>,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    oidc_refresh_tokens (token_hash) {
        token_hash -> Text,
        grant_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    oidc_logouts (id) {
        id -> Text,
        app_id -> Text,
        session_hash -> Text,
        sid -> Text,
        org_id -> Text,
        user_id -> Text,
        cause -> Text,
        created_at -> BigInt,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        gave_up_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(oidc_grants -> oidc_apps (app_id));
diesel::joinable!(oidc_codes -> oidc_grants (grant_id));
diesel::joinable!(oidc_refresh_tokens -> oidc_grants (grant_id));
diesel::joinable!(oidc_logouts -> oidc_apps (app_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    domains,
    users,
    user_groups,
    memberships,
    audit_events,
    instance_admins,
    sessions,
    roles,
    role_mappings,
    tombstones,
    scim_tokens,
    signing_keys,
    user_attrs,
    connections,
    saml_requests,
    oidc_requests,
    saml_replay,
    user_identities,
    sso_handoffs,
    connection_tests,
    admin_form_submissions,
    setup_links,
    oidc_apps,
    oidc_auth_requests,
    oidc_grants,
    oidc_codes,
    oidc_refresh_tokens,
    oidc_logouts,
);
