#!/usr/bin/env python3
"""A tiny upstream app for the proxy tests: answers every request with the request's method,
path and headers as JSON, and for a body its size and SHA-256 (read as it streams, plain or
chunked). Prints {"port": N} once listening. With two arguments (a PEM certificate chain and its
key) it serves HTTPS."""

import hashlib
import http.server
import json
import ssl
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self):
        digest, size = hashlib.sha256(), 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    break
                chunk = self.rfile.read(n)
                digest.update(chunk)
                size += len(chunk)
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 65536))
                digest.update(chunk)
                size += len(chunk)
                left -= len(chunk)
        return {"size": size, "sha256": digest.hexdigest()}

    def do_GET(self):
        if self.path.startswith("/early-hints"):
            # A 103 Early Hints first, and the answer a moment later.
            self.send_response_only(103)
            self.send_header("link", "</style.css>; rel=preload")
            self.end_headers()
            self.wfile.flush()
            time.sleep(0.05)
        answer = {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        if self.command == "POST":
            answer["body"] = self.read_body()
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def do_HEAD(self):
        body = json.dumps({"method": "HEAD", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) == 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
