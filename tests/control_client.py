#!/usr/bin/env python3
"""A client of the proxy's control API written with `requests`, as a user's script would be.

    python3 tests/control_client.py PROXY_URL CONTROL_URL

Sends a block of requests before a fault, turns the fault on through the control API, sends a
block under it, turns it off, sends a block after it; then reads the proxy's request history and
checks that exactly the middle block was affected. Every request carries `x-traceforge-index`,
so its decision is keyed on its index, not on arrival order. Exits non-zero, saying why, on any
mismatch.
"""

import sys

import requests

BEFORE, BLOCK, AFTER = 5, 7, 5
RULE = "control-503"
TIMEOUT = 10


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def send(session, proxy, index):
    """One request through the proxy; returns (status, x-fault-injected, request id)."""
    path = f"/api/resource?n={index}"
    response = session.get(
        proxy + path, headers={"x-traceforge-index": str(index)}, timeout=TIMEOUT
    )
    return response.status_code, response.headers.get("x-fault-injected"), path


def expect(response, status, what):
    if response.status_code != status:
        fail(f"{what}: expected {status}, got {response.status_code}: {response.text}")
    return response.json()


def main():
    if len(sys.argv) != 3:
        fail("usage: control_client.py PROXY_URL CONTROL_URL")
    proxy, control = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
    session = requests.Session()
    index = 0
    sent = []  # (path, expected faulted?)

    # Before: no rule, nothing faulted.
    for _ in range(BEFORE):
        status, injected, path = send(session, proxy, index)
        if status != 200 or injected is not None:
            fail(f"request {index} before the fault: status {status}, x-fault-injected {injected}")
        sent.append((path, False))
        index += 1

    # The fault on: a rule in a scenario's [[faults]] shape.
    rule = {"name": RULE, "kind": "error", "status": 503, "match": {"path": "/api/resource"}}
    created = expect(session.post(control + "/rules", json=rule, timeout=TIMEOUT), 201, "POST /rules")
    if created.get("name") != RULE or created.get("enabled") is not True:
        fail(f"POST /rules answered {created}")
    listed = expect(session.get(control + "/rules", timeout=TIMEOUT), 200, "GET /rules")
    if [r["name"] for r in listed["rules"]] != [RULE]:
        fail(f"GET /rules lists {listed}")

    # The block: every request gets exactly the rule's 503.
    for _ in range(BLOCK):
        status, injected, path = send(session, proxy, index)
        if status != 503 or injected != RULE:
            fail(f"request {index} in the block: status {status}, x-fault-injected {injected}")
        sent.append((path, True))
        index += 1

    # The fault off (disabled, then removed): requests pass again.
    disabled = expect(
        session.post(f"{control}/rules/{RULE}/disable", timeout=TIMEOUT), 200, "disable"
    )
    if disabled.get("enabled") is not False:
        fail(f"disable answered {disabled}")
    expect(session.delete(f"{control}/rules/{RULE}", timeout=TIMEOUT), 200, "DELETE")
    missing = session.delete(f"{control}/rules/{RULE}", timeout=TIMEOUT)
    if missing.status_code != 404 or "error" not in missing.json():
        fail(f"a second DELETE answered {missing.status_code}: {missing.text}")
    for _ in range(AFTER):
        status, injected, path = send(session, proxy, index)
        if status != 200 or injected is not None:
            fail(f"request {index} after the fault: status {status}, x-fault-injected {injected}")
        sent.append((path, False))
        index += 1

    # The history: exactly the block's records show the fault, in order.
    total = BEFORE + BLOCK + AFTER
    history = expect(
        session.get(control + "/requests", params={"last": total}, timeout=TIMEOUT),
        200,
        "GET /requests",
    )["requests"]
    if [r["path"] for r in history] != [path for path, _ in sent]:
        fail(f"the history's paths are {[r['path'] for r in history]}, not the requests sent")
    for record, (path, faulted) in zip(history, sent):
        rules = [f["rule"] for f in record["faults"]]
        if faulted and (rules != [RULE] or record["status"] != 503 or record["outcome"] != "injected_error"):
            fail(f"{path} in the block has the record {record}")
        if not faulted and (rules or record["status"] != 200 or record["outcome"] != "forwarded"):
            fail(f"{path} outside the block has the record {record}")

    # A bad rule is refused with the scenario file's message.
    bad = session.post(control + "/rules", json={"name": "x", "kind": "error", "status": 700}, timeout=TIMEOUT)
    if bad.status_code != 400 or bad.json()["problems"][0]["path"] != "status":
        fail(f"an invalid rule answered {bad.status_code}: {bad.text}")

    print(f"ok: {BLOCK} of {total} requests faulted, exactly the block")


if __name__ == "__main__":
    main()
