#!/usr/bin/env python3
"""A browser-facing test IdP for the end-to-end test: it answers the SP's HTTP-Redirect
AuthnRequest (GET /sso?SAMLRequest=…&RelayState=…) with an HTML form that POSTs a signed
SAMLResponse (built by saml_idp.py, i.e. pysaml2) to the ACS URL named in the request.

Usage: saml_idp_server.py CONFIG.json   -> prints {"port": N} on stdout, then serves.
CONFIG: {"idp_entity_id", "idp_key_pem", "idp_cert_pem", "name_id", "attributes": {...},
         optionally "sp_entity_id"}; the request's ID, ACS URL and Issuer (the SP entity ID,
         when the config does not name one) fill in the rest.
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


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/sso":
            self.send_error(404)
            return
        q = urllib.parse.parse_qs(url.query)
        request_xml = zlib.decompress(base64.b64decode(q["SAMLRequest"][0]), -15).decode()
        request_id = re.search(r' ID="([^"]+)"', request_xml).group(1)
        acs = re.search(r'AssertionConsumerServiceURL="([^"]+)"', request_xml).group(1)
        relay = q.get("RelayState", [""])[0]
        issuer = re.search(r"<(?:\w+:)?Issuer[^>]*>([^<]+)</", request_xml)
        spec = dict(CONFIG)
        if "sp_entity_id" not in spec and issuer:
            spec["sp_entity_id"] = html.unescape(issuer.group(1).strip())
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

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
