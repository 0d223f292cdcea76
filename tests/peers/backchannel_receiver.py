#!/usr/bin/env python3
"""An app's back-channel logout endpoint for the tests, verifying each logout token with an
independent JOSE library (PyPI PyJWT) against gatehouse's JWKS, as OpenID Connect
Back-Channel Logout 1.0 §2.6 asks: signature (RS256 or ES256, never none or HS256), iss, aud,
iat, `typ` logout+jwt, the back-channel event with an empty object, sub or sid, no nonce.

Usage: backchannel_receiver.py JWKS_URL ISSUER AUDIENCE [FAIL_FIRST]
Prints {"port": N}, then one JSON line per POST: {"ok": true, "claims": {...}} or
{"ok": false, "error": "..."}. Answers 200 when valid, 400 when not; the first FAIL_FIRST
POSTs are answered 503 (to see gatehouse retry).
"""

import http.server
import json
import sys
import urllib.parse

import jwt

JWKS_URL, ISSUER, AUDIENCE = sys.argv[1:4]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 0
EVENT = "http://schemas.openid.net/event/backchannel-logout"
seen = {"posts": 0}


def check(token):
    header = jwt.get_unverified_header(token)
    if header.get("typ", "").lower() != "logout+jwt":
        raise ValueError(f"typ is {header.get('typ')!r}")
    key = jwt.PyJWKClient(JWKS_URL).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256", "ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["iat", "iss", "aud", "jti"]},
    )
    if claims.get("events", {}).get(EVENT) != {}:
        raise ValueError("no back-channel logout event")
    if "nonce" in claims:
        raise ValueError("a logout token must not carry a nonce")
    if "sub" not in claims and "sid" not in claims:
        raise ValueError("neither sub nor sid")
    return claims


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        seen["posts"] += 1
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        if seen["posts"] <= FAIL_FIRST:
            self.send_response(503)
            self.end_headers()
            print(json.dumps({"ok": False, "error": "told to fail"}), flush=True)
            return
        try:
            if self.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                raise ValueError("not a form post")
            form = urllib.parse.parse_qs(body)
            claims = check(form["logout_token"][0])
            print(json.dumps({"ok": True, "claims": claims}), flush=True)
            self.send_response(200)
        except Exception as e:  # noqa: BLE001 - the reason is the output
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
            self.send_response(400)
        self.send_header("cache-control", "no-store")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
