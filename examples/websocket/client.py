#!/usr/bin/env python3
"""A WebSocket client that survives lost messages and closed connections, used as the load of
scenarios/websocket-drop.toml.

It opens SESSIONS sessions to an echo endpoint, one after the other. A session sends MESSAGES text
messages, one at a time, and waits up to TIMEOUT seconds for each echo. What a resilient client of
an unreliable connection does, it does:

- an echo that does not come in time (the message or its echo was lost) is sent again, up to
  RESENDS times per message;
- a connection the server closes (any close code, such as 1011) is opened again, up to RECONNECTS
  times per session, and the session goes on from the first message not yet echoed;
- an echo that arrives late, after the message was sent again, is recognised and ignored.

Every connection of session n carries the same `traceparent`, derived from n so every run sends
the same ones: the proxy keys its fault decisions on it and on which connection of the session it
is (the first, the second after a reconnect, ...). It prints what happened and exits 0 when every
message of every session was echoed in the end, 1 otherwise.

  URL         the echo endpoint, ws://HOST:PORT/PATH (http:// and https:// are accepted, as
              ws:// and wss://: TraceForge passes {proxies.NAME.url})
  WS_PATH     a path added to URL, such as /ws/echo (default none)
  SESSIONS    how many sessions (default 4)
  MESSAGES    messages per session (default 10)
  TIMEOUT     seconds to wait for an echo (default 1)
  RESENDS     resends of one message after its first send (default 3)
  RECONNECTS  reconnects per session after its first connection (default 3)

Needs Python's websockets (`pip install websockets`).
"""

import asyncio
import hashlib
import os
import sys

import websockets

URL = os.environ.get("URL", "ws://127.0.0.1:8081/ws/echo")
WS_PATH = os.environ.get("WS_PATH", "")
SESSIONS = int(os.environ.get("SESSIONS", "4"))
MESSAGES = int(os.environ.get("MESSAGES", "10"))
TIMEOUT = float(os.environ.get("TIMEOUT", "1"))
RESENDS = int(os.environ.get("RESENDS", "3"))
RECONNECTS = int(os.environ.get("RECONNECTS", "3"))


def ws_url():
    """The endpoint: URL and WS_PATH, with a ws:// or wss:// scheme."""
    url = URL.rstrip("/") + WS_PATH if WS_PATH else URL
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    return url


def traceparent(n):
    """A W3C traceparent for session n: the same on every run."""
    trace = hashlib.sha256(f"ws-client/trace/{n}".encode()).hexdigest()[:32]
    span = hashlib.sha256(f"ws-client/span/{n}".encode()).hexdigest()[:16]
    return f"00-{trace}-{span}-01"


class Lost(Exception):
    """A message was sent RESENDS + 1 times and never echoed."""


async def echo(ws, text):
    """Sends text until its echo comes back; returns how many times it was sent again."""
    for resend in range(RESENDS + 1):
        await ws.send(text)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                got = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                break
            if got == text:
                return resend
            # A late echo of an earlier message: it was already sent again; ignore it.
    raise Lost(text)


async def session(n, stats):
    """Runs session n; returns None when every message was echoed, else what went wrong."""
    url = ws_url()
    headers = {"traceparent": traceparent(n)}
    done = 0
    for connection in range(RECONNECTS + 1):
        if connection:
            stats["reconnects"] += 1
        try:
            async with websockets.connect(
                url, additional_headers=headers, open_timeout=10, close_timeout=2, ping_interval=None
            ) as ws:
                while done < MESSAGES:
                    stats["resends"] += await echo(ws, f"session {n} message {done}")
                    done += 1
                return None
        except websockets.exceptions.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            stats["closes"][code] = stats["closes"].get(code, 0) + 1
        except Lost as lost:
            return f"session {n}: no echo of {lost} after {RESENDS + 1} sends"
    return f"session {n}: closed {RECONNECTS + 1} times, {done} of {MESSAGES} messages echoed"


async def main():
    stats = {"resends": 0, "reconnects": 0, "closes": {}}
    problems = []
    for n in range(SESSIONS):
        problem = await session(n, stats)
        if problem:
            problems.append(problem)
    closes = " ".join(f"{code}={count}" for code, count in sorted(stats["closes"].items()))
    print(
        f"{SESSIONS - len(problems)} of {SESSIONS} sessions echoed all {MESSAGES} messages;"
        f" {stats['resends']} resends, {stats['reconnects']} reconnects, closes: {closes or 'none'}"
    )
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
