"""Interop check: the third-party Python client `ngsildclient` (PyPI) against
the real citybrain binary. Run by .ci/run; needs CITYBRAIN_PORT.

It creates, reads, queries, updates, batch-upserts, subscribes (and receives
a notification), reads history, and deletes — through the client's own code
paths (trailing slashes, Location headers, NGSILD-Results-Count, the
unversioned core @context URL, tenant auto-creation).
"""
import http.server
import json
import os
import sys
import threading
import time

from ngsildclient import Client, Entity, SubscriptionBuilder

PORT = int(os.environ["CITYBRAIN_PORT"])
passed, failed = 0, 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=srv.serve_forever, daemon=True).start()
notify_url = f"http://127.0.0.1:{srv.server_address[1]}/notify"

e = Entity("OffStreetParking", "Downtown1")
e.prop("availableSpotNumber", 121, observedat="2026-11-26T10:00:00Z")
e.prop("totalSpotNumber", 200)
e.gprop("location", (30.2614, 120.1786))
e.rel("refParkingGroup", "urn:ngsi-ld:ParkingGroup:G1")

with Client(hostname="127.0.0.1", port=PORT, tenant="interop") as c:
    c.subscriptions.create(
        SubscriptionBuilder(notify_url).select_type("OffStreetParking").watch(["availableSpotNumber"]).build()
    )
    check("subscription listed", len(c.subscriptions.list()) == 1)

    c.create(e)
    got = c.get(e.id)
    check("create + get", got["availableSpotNumber"]["value"] == 121, got)
    check("relationship kept", got["refParkingGroup"]["object"] == "urn:ngsi-ld:ParkingGroup:G1")

    found = c.query(type="OffStreetParking", q="availableSpotNumber>100")
    check("query with q", len(found) == 1 and found[0]["id"] == e.id, found)
    check("count", c.count(type="OffStreetParking") == 1)

    e2 = Entity("OffStreetParking", "Downtown2").prop("availableSpotNumber", 5)
    e3 = Entity("OffStreetParking", "Downtown3").prop("availableSpotNumber", 7)
    res = c.upsert([e2, e3])
    check("batch upsert", c.count(type="OffStreetParking") == 3, res)

    e["availableSpotNumber"].value = 99
    c.update(e)
    check("update", c.get(e.id)["availableSpotNumber"]["value"] == 99)

    for _ in range(100):
        if received:
            break
        time.sleep(0.05)
    check("notification received", len(received) >= 1, received)
    if received:
        check("notification shape", received[0]["type"] == "Notification" and received[0]["data"][0]["type"] == "OffStreetParking", received[0])

    hist = c.temporal.get(e.id)
    check("temporal get", hist is not None, hist)

    c.delete(e)
    check("delete", not c.exists(e.id))

print(f"ngsildclient: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
