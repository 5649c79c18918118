#!/usr/bin/env python3
"""Validates citybrain's Open311 GeoReport v2 facade against the JSON
Schemas in georeport-v2.schema.json, on the real binary.

Usage: python validate.py PATH/TO/citybrain

It starts the demo on a free port with an empty database, files requests
through the facade (with an api_key from the demo's tokens), and checks
every JSON response against its schema and every XML response's shape
(root, item elements, required children). Needs `jsonschema` (PyPI).
Exits 1 on the first failure, naming the URL and what was wrong.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from jsonschema import Draft202012Validator

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = json.load(open(os.path.join(HERE, "georeport-v2.schema.json"), encoding="utf-8"))
checks = 0


def validator(name):
    return Draft202012Validator({"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{name}"})


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def fetch(url, data=None):
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8")


def check_json(url, schema, status=200, data=None):
    global checks
    code, ctype, body = fetch(url, data)
    if code != status:
        fail(f"{url}: HTTP {code}, expected {status}: {body[:300]}")
    if not ctype.startswith("application/json"):
        fail(f"{url}: Content-Type {ctype}")
    doc = json.loads(body)
    errors = sorted(validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        fail(f"{url} against {schema}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
    checks += 1
    print(f"ok   {url.split('/open311/v2/')[1]} is a valid {schema}")
    return doc


def check_xml(url, root, item, required, status=200, data=None):
    global checks
    code, ctype, body = fetch(url, data)
    if code != status:
        fail(f"{url}: HTTP {code}, expected {status}: {body[:300]}")
    if not ctype.startswith("text/xml"):
        fail(f"{url}: Content-Type {ctype}")
    doc = ET.fromstring(body.encode("utf-8"))
    if doc.tag != root:
        fail(f"{url}: root <{doc.tag}>, expected <{root}>")
    # No item name: the root itself holds the required children.
    items = list(doc) if item else [doc]
    if item and not items:
        fail(f"{url}: no <{item}> in <{root}>")
    for el in items:
        if item and el.tag != item:
            fail(f"{url}: <{el.tag}> in <{root}>, expected <{item}>")
        missing = [r for r in required if el.find(r) is None]
        if missing:
            fail(f"{url}: <{el.tag}> lacks {missing}")
    checks += 1
    print(f"ok   {url.split('/open311/v2/')[1]} has the GeoReport v2 XML shape")


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.join(HERE, "..", "..")
    proc = subprocess.Popen(
        [binary, "demo", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:{work}/o.db", "--demo-city", "0",
         "--live", "none", "--log", "warn", "--appeals", os.path.join(root, "appeals"),
         "--services", os.path.join(root, "services"), "--policies", os.path.join(root, "policies")],
        stdout=subprocess.PIPE, text=True)
    key = None
    deadline = time.time() + 120
    for line in proc.stdout:
        words = line.split()
        if len(words) >= 3 and words[0] == "officer" and "shangcheng-urban-management" in words[1]:
            key = words[-1]
        if line.startswith("citybrain listening on"):
            break
        if time.time() > deadline:
            fail("the server did not start")
    if not key:
        fail("no demo token for the district officer")
    base = f"http://127.0.0.1:{port}/open311/v2"
    try:
        check_json(f"{base}/discovery.json", "discovery")
        services = check_json(f"{base}/services.json", "services")
        check_xml(f"{base}/services.xml", "services", "service", ["service_code", "service_name", "metadata", "type"])
        for s in services:
            check_json(f"{base}/services/{s['service_code']}.json", "serviceDefinition")
        check_xml(f"{base}/services/road-damage.xml", "service_definition", None, ["service_code", "attributes"])
        form = {"api_key": key, "service_code": "streetlight", "lat": "30.2612", "long": "120.1791",
                "description": "The lamp by the bus stop is out", "email": "resident@example.cn"}
        created = check_json(f"{base}/requests.json", "created", 201, urllib.parse.urlencode(form).encode())
        rid = created[0]["service_request_id"]
        check_xml(f"{base}/requests.xml", "service_requests", "request", ["service_request_id"], 201,
                  urllib.parse.urlencode({**form, "description": "Still out"}).encode())
        check_json(f"{base}/requests.json", "errors", 403,
                   urllib.parse.urlencode({k: v for k, v in form.items() if k != "api_key"}).encode())
        check_json(f"{base}/requests.json", "errors", 400,
                   urllib.parse.urlencode({"api_key": key, "service_code": "streetlight"}).encode())
        check_xml(f"{base}/requests.xml", "errors", "error", ["code", "description"], 403,
                  urllib.parse.urlencode({"service_code": "streetlight"}).encode())
        check_json(f"{base}/requests.json", "requests")
        check_json(f"{base}/requests.json?status=open&service_code=streetlight&page=1&page_size=10", "requests")
        check_json(f"{base}/requests/{rid}.json", "requests")
        check_xml(f"{base}/requests/{rid}.xml", "service_requests", "request",
                  ["service_request_id", "status", "service_code", "requested_datetime"])
        check_json(f"{base}/requests/unknown.json", "errors", 404)
        check_json(f"{base}/tokens/{rid}.json", "token")
        check_json(f"{base}/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z", "errors", 400)
        check_json(f"{base}/servicerequestupdates.json", "updates")
        check_xml(f"{base}/servicerequestupdates.xml", "service_request_updates", "request_update",
                  ["update_id", "service_request_id", "status", "updated_datetime", "description"])
        check_json(f"{base}/services.json?jurisdiction_id=elsewhere.example", "errors", 404)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{checks} Open311 checks passed")


if __name__ == "__main__":
    main()
