#!/usr/bin/env python3
"""Runs the test's Django app (see settings.py) on 127.0.0.1.

Usage: OIDC_ISSUER=… DJANGO_DATA_DIR=… [DJANGO_PORT=0] serve.py
  -> prints {"port": N} first (the socket is bound, so the app's redirect URI
     http://127.0.0.1:N/oidc/callback/ can be registered with gatehouse now); then, unless
     OIDC_RP_CLIENT_ID is set, reads one line {"client_id", "client_secret"} from stdin;
     runs the migrations, prints {"ready": true} and serves.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402

server = ThreadedWSGIServer(
    ("127.0.0.1", int(os.environ.get("DJANGO_PORT", "0"))), WSGIRequestHandler
)
print(json.dumps({"port": server.server_address[1]}), flush=True)
if not os.environ.get("OIDC_RP_CLIENT_ID"):
    creds = json.loads(sys.stdin.readline())
    os.environ["OIDC_RP_CLIENT_ID"] = creds["client_id"]
    os.environ["OIDC_RP_CLIENT_SECRET"] = creds["client_secret"]

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

call_command("migrate", interactive=False, verbosity=0)
server.set_app(get_wsgi_application())
print(json.dumps({"ready": True}), flush=True)
server.serve_forever()
