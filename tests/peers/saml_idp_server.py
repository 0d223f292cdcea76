#!/usr/bin/env python3
"""A browser-facing test IdP for the end-to-end test: it answers the SP's HTTP-Redirect
AuthnRequest (GET /sso?SAMLRequest=…&RelayState=…) with an HTML form that POSTs a signed
SAMLResponse (built by saml_idp.py, i.e. pysaml2) to the ACS URL named in the request.

Usage: saml_idp_server.py CONFIG.json   -> prints {"port": N} on stdout, then serves.
CONFIG: {"idp_entity_id", "idp_key_pem", "idp_cert_pem", "name_id", "attributes": {...},
         optionally "sp_entity_id"}; the request's ID, ACS URL and Issuer (the SP entity ID,
         when the config does not name one) fill in the rest.

Like an IdP's console when CONFIG has "console": true (Okta asks for the SP's values before it
shows its metadata): POST /app with `acs_url` and `sp_entity_id` (form-encoded) sets up the
app; until then GET /metadata and sign-ins answer 409. After it, responses go to the ACS URL
entered there (not the one the request names) for that audience, and a request from another
SP entity ID is refused. GET /metadata serves CONFIG's "metadata_xml", its "{SSO_URL}" replaced
by this server's /sso address.
"""

import base64
import html
import http.server
import json
import os
import re
import sys
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import saml_idp  # noqa: E402  (the sibling module)

CONFIG = json.load(open(sys.argv[1]))
APP = {}


def refuse(handler, status, text):
    data = text.encode()
    handler.send_response(status)
    handler.send_header("content-type", "text/plain; charset=utf-8")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        console = CONFIG.get("console", False)
        if url.path == "/metadata" and console:
            if not APP:
                refuse(self, 409, "enter the SP's ACS URL and entity ID first")
                return
            self.send_response(200)
            sso = f"http://127.0.0.1:{self.server.server_address[1]}/sso"
            data = CONFIG["metadata_xml"].replace("{SSO_URL}", sso).encode()
            self.send_header("content-type", "application/samlmetadata+xml")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if url.path != "/sso":
            self.send_error(404)
            return
        if console and not APP:
            refuse(self, 409, "this app is not set up yet")
            return
        q = urllib.parse.parse_qs(url.query)
        request_xml = zlib.decompress(base64.b64decode(q["SAMLRequest"][0]), -15).decode()
        request_id = re.search(r' ID="([^"]+)"', request_xml).group(1)
        acs = re.search(r'AssertionConsumerServiceURL="([^"]+)"', request_xml).group(1)
        relay = q.get("RelayState", [""])[0]
        issuer = re.search(r"<(?:\w+:)?Issuer[^>]*>([^<]+)</", request_xml)
        spec = {k: v for k, v in CONFIG.items() if k not in ("console", "metadata_xml")}
        if "sp_entity_id" not in spec and issuer:
            spec["sp_entity_id"] = html.unescape(issuer.group(1).strip())
        if console:
            if not issuer or html.unescape(issuer.group(1).strip()) != APP["sp_entity_id"]:
                refuse(self, 400, "the request comes from another SP entity ID")
                return
            acs = APP["acs_url"]
            spec["sp_entity_id"] = APP["sp_entity_id"]
        spec.update({"in_response_to": request_id, "acs_url": acs})
        result = saml_idp.generate(saml_idp.parse_request(spec))
        body = f"""<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" action="{html.escape(acs)}">
<input type="hidden" name="SAMLResponse" value="{html.escape(result['saml_response'])}">
<input type="hidden" name="RelayState" value="{html.escape(relay)}">
<noscript><button type="submit">Continue</button></noscript>
</form></body></html>"""
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if self.path != "/app" or not CONFIG.get("console", False):
            self.send_error(404)
            return
        length = int(self.headers.get("content-length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        APP["acs_url"] = form["acs_url"][0]
        APP["sp_entity_id"] = form["sp_entity_id"][0]
        refuse(self, 200, "saved")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
