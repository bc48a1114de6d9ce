#!/usr/bin/env python3
"""A gRPC client of a payments API, used as the load of scenarios/grpc-unavailable.toml.

It calls the unary method /shop.v1.Payments/Charge CALLS times, CONCURRENCY at a time, with no
generated code: `channel.unary_unary(...)` sends and receives the serialized protobuf bytes as they
are. Each call carries a trace context of its own as `traceparent` metadata, derived from the call
number so every run sends the same ones (the proxy keys its fault decisions on it). A call that
fails with UNAVAILABLE, the status a server uses for "try again", is retried up to RETRIES times
with the same trace context; any other failure is not retried. It prints how the calls ended and
exits 0 when at least MIN_SUCCESS of them succeeded in the end, 1 otherwise.

  TARGET       the server, `host:port` (a URL such as http://127.0.0.1:PORT is accepted: TraceForge
               passes {proxies.NAME.url}, and grpcio wants the address without the scheme)
  CALLS        how many calls to make (default 30)
  RETRIES      retries of an UNAVAILABLE call after the first attempt (default 2)
  MIN_SUCCESS  the share of calls that must succeed, 0 to 1 (default 0.9)
  CONCURRENCY  how many calls are in flight at once, on one channel (default 1)

Needs Python's grpcio (`pip install grpcio`).
"""

import hashlib
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc

TARGET = os.environ.get("TARGET", "127.0.0.1:50051")
CALLS = int(os.environ.get("CALLS", "30"))
RETRIES = int(os.environ.get("RETRIES", "2"))
MIN_SUCCESS = float(os.environ.get("MIN_SUCCESS", "0.9"))
CONCURRENCY = max(1, int(os.environ.get("CONCURRENCY", "1")))
# How long one attempt may take, in seconds.
DEADLINE = 10.0
# The wait before the first retry, doubled for each one after it, in seconds.
BACKOFF = 0.02

METHOD = "/shop.v1.Payments/Charge"
# A ChargeRequest: field 1 (a string) "order-N", serialized by hand (tag 0x0a, length, bytes).


def charge_request(n):
    order = f"order-{n}".encode()
    return b"\x0a" + bytes([len(order)]) + order


def address(target):
    """`host:port` from a URL or an address: grpcio takes no scheme."""
    for scheme in ("http://", "https://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    return target.rstrip("/")


def traceparent(n):
    """A W3C traceparent for call number n: the same on every run."""
    trace = hashlib.sha256(f"grpc-client/trace/{n}".encode()).hexdigest()[:32]
    span = hashlib.sha256(f"grpc-client/span/{n}".encode()).hexdigest()[:16]
    return f"00-{trace}-{span}-01"


def call(charge, n):
    """Makes call n with its retries; returns (final status name, attempts)."""
    metadata = (("traceparent", traceparent(n)),)
    backoff = BACKOFF
    attempts = 0
    while True:
        attempts += 1
        try:
            charge(charge_request(n), timeout=DEADLINE, metadata=metadata)
            return "OK", attempts
        except grpc.RpcError as error:
            code = error.code()
            if code != grpc.StatusCode.UNAVAILABLE or attempts > RETRIES:
                return code.name, attempts
        time.sleep(backoff)
        backoff *= 2


def main():
    with grpc.insecure_channel(address(TARGET)) as channel:
        charge = channel.unary_unary(METHOD)
        outcomes = Counter()
        retried = 0
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            for status, attempts in pool.map(lambda n: call(charge, n), range(CALLS)):
                outcomes[status] += 1
                retried += attempts > 1
    succeeded = outcomes["OK"]
    share = succeeded / CALLS if CALLS else 0.0
    summary = " ".join(f"{name}={count}" for name, count in sorted(outcomes.items()))
    print(
        f"{succeeded} of {CALLS} calls succeeded ({share:.0%}), {retried} after a retry, "
        f"{CONCURRENCY} in flight at most: {summary}"
    )
    if share < MIN_SUCCESS:
        print(f"FAIL: fewer than {MIN_SUCCESS:.0%} of calls succeeded")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
