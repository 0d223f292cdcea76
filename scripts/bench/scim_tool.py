"""Helpers for scripts/bench-scim (standard library only): seeding through /Bulk, the timed
single requests (a 10,000-member PATCH, removing one member), and exactness checks.

Usage:
  scim_tool.py seed BASE TOKEN COUNT PREFIX IDS_FILE   create COUNT users (bulk, 1,000 per request)
  scim_tool.py group BASE TOKEN IDS_FILE               the membership measurements (c) and (d)
  scim_tool.py check BASE TOKEN EXPECTED               totalResults and page contents at depths
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Client:
    def __init__(self, base, token):
        u = urllib.parse.urlsplit(base)
        self.prefix = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.headers = {"Content-Type": "application/scim+json", "Accept": "application/scim+json"}
        if token and token != "-":
            self.headers["Authorization"] = "Bearer " + token

    def send(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        self.conn.request(method, self.prefix + path, body=data, headers=self.headers)
        res = self.conn.getresponse()
        raw = res.read()
        elapsed = time.perf_counter() - started
        doc = json.loads(raw) if raw else None
        return res.status, doc, elapsed


def seed(base, token, count, prefix, ids_file):
    count = int(count)
    c = Client(base, token)
    ids = []
    started = time.perf_counter()
    for start in range(0, count, 1000):
        ops = [
            {
                "method": "POST",
                "bulkId": f"b{n}",
                "path": "/Users",
                "data": {
                    "schemas": [USER],
                    "userName": f"{prefix}-{n}@bench.test",
                    "name": {"givenName": "Seed", "familyName": f"User {n}"},
                    "emails": [{"value": f"{prefix}-{n}@bench.test", "type": "work", "primary": True}],
                    "active": True,
                },
            }
            for n in range(start, min(start + 1000, count))
        ]
        status, doc, _ = c.send("POST", "/Bulk", {"schemas": [BULK], "Operations": ops})
        if status != 200:
            sys.exit(f"bulk seed failed: {status} {doc}")
        for op in doc["Operations"]:
            if op.get("status") != "201":
                sys.exit(f"bulk seed operation failed: {op}")
            ids.append(op["location"].rstrip("/").rsplit("/", 1)[1])
    elapsed = time.perf_counter() - started
    with open(ids_file, "w") as f:
        f.write("\n".join(ids))
    print(f"{count} {elapsed:.1f}")


def ms(seconds):
    return seconds * 1000


def group(base, token, ids_file):
    ids = open(ids_file).read().split()
    c = Client(base, token)
    status, g, _ = c.send("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone"})
    if status != 201:
        sys.exit(f"group create failed: {status} {g}")
    gid = g["id"]
    timings = []
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        body = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in chunk]}]}
        status, doc, elapsed = c.send("PATCH", f"/Groups/{gid}", body)
        if status not in (200, 204):
            sys.exit(f"member PATCH failed: {status} {doc}")
        timings.append(elapsed)
    # Removing one member of the full group (and putting it back), several times.
    removes = []
    for n in range(20):
        victim = ids[(n * 4999) % len(ids)]
        body = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{victim}"]'}]}
        status, doc, elapsed = c.send("PATCH", f"/Groups/{gid}", body)
        if status not in (200, 204):
            sys.exit(f"member remove failed: {status} {doc}")
        removes.append(elapsed)
        body = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": victim}]}]}
        c.send("PATCH", f"/Groups/{gid}", body)
    # Exactness: the group has every member, counted by a filter on membership.
    status, doc, _ = c.send("GET", "/Groups/" + gid + "?attributes=displayName")
    status, doc, member_get = c.send("GET", "/Groups/" + gid)
    members = len(doc.get("members", []))
    print(
        json.dumps(
            {
                "first_10k_patch_ms": ms(timings[0]),
                "max_10k_patch_ms": ms(max(timings)),
                "patches": len(timings),
                "remove_p50_ms": ms(statistics.median(removes)),
                "remove_max_ms": ms(max(removes)),
                "members": members,
                "full_group_get_ms": ms(member_get),
            }
        )
    )


def check(base, token, expected):
    c = Client(base, token)
    expected = int(expected)
    # An independent count: a filter always counts the matching rows themselves.
    status, doc, _ = c.send("GET", "/Users?count=0&filter=" + urllib.parse.quote("userName pr"))
    if doc["totalResults"] != expected:
        sys.exit(f"totalResults {expected} unfiltered, but {doc['totalResults']} users have a userName")
    seen = set()
    depths = [1, expected // 2, max(1, expected - 99)]
    for start in depths:
        status, doc, _ = c.send("GET", f"/Users?startIndex={start}&count=100&attributes=userName")
        if status != 200:
            sys.exit(f"paging failed: {status} {doc}")
        if doc["totalResults"] != expected:
            sys.exit(f"totalResults {doc['totalResults']} at startIndex {start}, expected {expected}")
        want = min(100, expected - start + 1)
        if len(doc["Resources"]) != want:
            sys.exit(f"{len(doc['Resources'])} resources at startIndex {start}, expected {want}")
        for r in doc["Resources"]:
            if r["id"] in seen:
                sys.exit(f"{r['id']} on two pages")
            seen.add(r["id"])
    status, doc, _ = c.send("GET", "/Users?filter=" + urllib.parse.quote('userName eq "seed-42@bench.test"'))
    if doc["totalResults"] != 1:
        sys.exit(f"filter found {doc['totalResults']} users named seed-42")
    print("exact")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"seed": seed, "group": group, "check": check}[cmd](*args[:2], *args[2:])
