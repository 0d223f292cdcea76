"""A small authoritative DNS server for the domain-verification tests (dnslib), on 127.0.0.1.

Usage: dns_server.py RECORDS_FILE
Answers TXT queries from RECORDS_FILE (JSON: {"name.": ["value", ...]}), read again on every
query so a test can publish or change a record while the server runs; any other name gets
NXDOMAIN. Serves UDP and TCP on one port and prints `port=<n>` once listening.
"""
import json
import socket
import sys

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Records(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower()
        try:
            with open(self.path) as f:
                records = json.load(f)
        except (OSError, ValueError):
            records = {}
        values = records.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for v in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(v), ttl=1))
        return reply


def free_port():
    # A port free for both UDP and TCP.
    while True:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            continue
        t.close()
        u.close()
        return port


def main():
    resolver = Records(sys.argv[1])
    port = free_port()
    # dnslib logs every query to stdout by default; the test stops reading stdout after the
    # port line, so log nothing.
    quiet = DNSLogger(logf=lambda _: None)
    udp = DNSServer(resolver, port=port, address="127.0.0.1", logger=quiet)
    tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True, logger=quiet)
    udp.start_thread()
    tcp.start_thread()
    print(f"port={port}", flush=True)
    # Until the test closes our stdin.
    sys.stdin.read()


if __name__ == "__main__":
    main()
