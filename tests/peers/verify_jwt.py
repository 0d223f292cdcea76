#!/usr/bin/env python3
"""Verifies a gatehouse identity JWT with an independent library (PyPI PyJWT).

Usage: verify_jwt.py JWKS_URL ISSUER AUDIENCE [ALGS] < token   (ALGS: comma list, default ES256)
Prints the verified claims as JSON, or exits 1 with the reason.
"""

import json
import sys

import jwt

jwks_url, issuer, audience = sys.argv[1:4]
algorithms = (sys.argv[4] if len(sys.argv) > 4 else "ES256").split(",")
token = sys.stdin.read().strip()
try:
    signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
except Exception as e:  # noqa: BLE001 - the reason is the output
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(claims))
