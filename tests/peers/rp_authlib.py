#!/usr/bin/env python3
"""A confidential relying party built on PyPI Authlib, authenticating with
client_secret_basic. Same line protocol as rp_openid_client.mjs: prints {"authorize": URL},
reads the callback URL, then exchanges the code (PKCE S256), validates the ID token with
Authlib's own JOSE code against the JWKS (iss, aud, exp, iat, nonce, at_hash), calls
userinfo, refreshes, introspects and revokes, and prints what it saw.

Usage: rp_authlib.py ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
"""

import json
import os
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test server is plain http on loopback

issuer, client_id, client_secret, redirect_uri = sys.argv[1:5]
meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == issuer, meta["issuer"]
session = OAuth2Session(
    client_id,
    client_secret,
    scope="openid email profile",
    redirect_uri=redirect_uri,
    token_endpoint_auth_method="client_secret_basic",
    code_challenge_method="S256",
)
nonce = generate_token(20)
verifier = generate_token(48)
url, state = session.create_authorization_url(
    meta["authorization_endpoint"], nonce=nonce, code_verifier=verifier, login_hint="ann@acme.test"
)
print(json.dumps({"authorize": url}), flush=True)
callback = sys.stdin.readline().strip()
token = session.fetch_token(
    meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
)
keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["id_token"],
    keys,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "value": issuer}},
    claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
)
claims.validate()
userinfo = session.get(meta["userinfo_endpoint"]).json()
refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
introspected = session.introspect_token(
    meta["introspection_endpoint"], token=refreshed["access_token"]
).json()
revoked = session.revoke_token(
    meta["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token"
).status_code
after = requests.post(
    meta["token_endpoint"],
    data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]},
    auth=(client_id, client_secret),
    timeout=10,
)
print(
    json.dumps(
        {
            "claims": dict(claims),
            "userinfo": userinfo,
            "rotated": refreshed["refresh_token"] != token["refresh_token"],
            "introspected": introspected,
            "revoked": revoked,
            "after_revoke": after.json().get("error"),
        }
    ),
    flush=True,
)
