#!/usr/bin/env python3
"""A client of checkout that tests it: the kind of script a team already has, used as the load.

It sends REQUESTS checkouts to CHECKOUT_URL one after the other, each with a trace context of its
own (`traceparent`, derived from the request number so every run sends the same ones), and checks
what a user of checkout cares about: at least MIN_SUCCESS of them must succeed, and a failed one
must say so in its body. It exits 0 when they hold and 1 when they do not, printing why.

  CHECKOUT_URL  base URL of the checkout service (TraceForge passes {services.checkout.url})
  REQUESTS      how many checkouts to send (default 20)
  MIN_SUCCESS   the share that must succeed, 0 to 1 (default 0.9)

Standard library only.
"""

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

CHECKOUT_URL = os.environ.get("CHECKOUT_URL", "http://127.0.0.1:8080").rstrip("/")
REQUESTS = int(os.environ.get("REQUESTS", "20"))
MIN_SUCCESS = float(os.environ.get("MIN_SUCCESS", "0.9"))


def traceparent(n):
    """A W3C traceparent for checkout number n: the same on every run."""
    trace = hashlib.sha256(f"client/trace/{n}".encode()).hexdigest()[:32]
    span = hashlib.sha256(f"client/span/{n}".encode()).hexdigest()[:16]
    return f"00-{trace}-{span}-01"


def checkout(n):
    """Sends checkout n; returns (status, body)."""
    request = urllib.request.Request(
        CHECKOUT_URL + "/checkout",
        data=json.dumps({"item": n}).encode(),
        headers={"Content-Type": "application/json", "traceparent": traceparent(n)},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def main():
    succeeded = 0
    problems = []
    for n in range(REQUESTS):
        status, body = checkout(n)
        if status == 200 and body.get("ok") is True:
            succeeded += 1
        elif body.get("ok") is not False:
            problems.append(f"checkout {n}: status {status} without an ok=false body: {body}")
    share = succeeded / REQUESTS if REQUESTS else 0.0
    print(f"{succeeded} of {REQUESTS} checkouts succeeded ({share:.0%})")
    if share < MIN_SUCCESS:
        problems.append(f"fewer than {MIN_SUCCESS:.0%} of checkouts succeeded")
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
