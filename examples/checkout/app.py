#!/usr/bin/env python3
"""Checkout: a small HTTP service that depends on a payments API.

POST /checkout charges the order with POST {PAYMENTS_URL}/charge. A 503 or a connection error is
retried with a doubling backoff (a Retry-After from the payments API is honoured instead, up to a
cap), and the trace context the request came with is passed on to every charge call.

Configuration, all through the environment:
  PORT          port to listen on, on 127.0.0.1 (default 8080)
  PAYMENTS_URL  base URL of the payments API (default http://127.0.0.1:9090)
  RETRIES       retries after the first charge attempt (default 2)
  BACKOFF_MS    wait before the first retry, doubled for each one after it (default 50)
  PROPAGATE     0 stops passing the trace context on (default 1)
  CHARGE_TIMEOUT_MS  how long one charge call may take (default 5000)

Standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:9090").rstrip("/")
RETRIES = int(os.environ.get("RETRIES", "2"))
BACKOFF_MS = int(os.environ.get("BACKOFF_MS", "50"))
PROPAGATE = os.environ.get("PROPAGATE", "1") != "0"

# The headers that carry the trace context from the caller to the payments API.
TRACE_HEADERS = ("traceparent", "X-Trace-Id", "X-Request-Id")
# The longest Retry-After this service is willing to wait, in seconds.
RETRY_AFTER_CAP = 5.0
# How long one charge call may take, in seconds.
CHARGE_TIMEOUT = float(os.environ.get("CHARGE_TIMEOUT_MS", "5000")) / 1000


def retry_after(value):
    """Seconds to wait from a Retry-After header (delay-seconds form only), capped; else None."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def charge(trace):
    """Charges the payments API; returns (succeeded, attempts)."""
    body = json.dumps({"amount_cents": 1999, "currency": "EUR"}).encode()
    headers = {"Content-Type": "application/json", **trace}
    backoff = BACKOFF_MS / 1000
    attempts = 0
    while True:
        attempts += 1
        wait = backoff
        request = urllib.request.Request(
            PAYMENTS_URL + "/charge", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=CHARGE_TIMEOUT) as response:
                response.read()
                return True, attempts
        except urllib.error.HTTPError as error:
            error.read()
            if error.code != 503:
                return False, attempts
            asked = retry_after(error.headers.get("Retry-After"))
            wait = backoff if asked is None else asked
        except (urllib.error.URLError, ConnectionError):
            pass  # not connected, or the connection broke before an answer: retry
        except OSError:
            return False, attempts  # timed out: the charge may have gone through, do not repeat it
        if attempts > RETRIES:
            return False, attempts
        time.sleep(wait)
        backoff *= 2


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        # Read the request body, if any, so the connection can be reused.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/checkout":
            self.reply(404, {"error": "not found"})
            return
        trace = {}
        if PROPAGATE:
            trace = {name: self.headers[name] for name in TRACE_HEADERS if name in self.headers}
        ok, attempts = charge(trace)
        self.reply(200 if ok else 502, {"ok": ok, "attempts": attempts})

    def reply(self, status, document):
        body = json.dumps(document).encode()
        # Log before answering: once the client has its answer, the line is already in the log.
        trace = self.headers.get("traceparent") or self.headers.get("X-Trace-Id") or "-"
        sys.stderr.write(f"{self.command} {self.path} {status} {body.decode()} trace={trace}\n")
        sys.stderr.flush()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        pass  # reply() writes the one line per request


def main():
    # The standard library's default backlog is 5: at a higher concurrency, connections beyond it
    # wait a full second for the kernel to retry them.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
