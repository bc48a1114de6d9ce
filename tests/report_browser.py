#!/usr/bin/env python3
"""Opens an HTML report in headless Chromium as a person would, over the DevTools protocol.

Usage: report_browser.py REPORT.html SCREENSHOT.png [MAX_HEIGHT]

Loads the page from file://, records console errors, uncaught exceptions, log errors and every
request the page makes besides itself (a self-contained report makes none), measures every chart
(`figure.chart`: its SVG's rendered size and how many shapes and texts it draws), and saves a
full-page PNG screenshot (cut at MAX_HEIGHT pixels when given). Prints one JSON object.
Needs `chromium` (or $CHROMIUM) and Python's `websockets`.
"""

import asyncio
import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

WIDTH = 1040

MEASURE = """
(() => {
  const charts = [...document.querySelectorAll('figure.chart')].map(f => {
    const svg = f.querySelector('svg');
    const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {
      id: f.dataset.chart,
      width: r.width,
      height: r.height,
      shapes: svg ? svg.querySelectorAll('path, polyline, polygon, rect, line, circle').length : 0,
      texts: svg ? svg.querySelectorAll('text').length : 0,
    };
  });
  const verdicts = [...document.querySelectorAll('section.scenario')].map(s => s.dataset.verdict);
  return JSON.stringify({charts, verdicts, title: document.title});
})()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_socket(port, deadline):
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                for target in json.load(r):
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Chromium's DevTools endpoint did not come up")


async def drive(url, report, screenshot, max_height):
    problems = []
    requests = []
    async with websockets.connect(url, max_size=None) as ws:
        ids = iter(range(1, 1_000_000))
        pending = {}

        async def call(method, **params):
            n = next(ids)
            await ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == n:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})
                events.append(message)

        events = []
        for domain in ("Runtime", "Page", "Log", "Network"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900,
                   deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=report.as_uri())
        deadline = time.time() + 30
        loaded = any(e.get("method") == "Page.loadEventFired" for e in events)
        while not loaded and time.time() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            events.append(message)
            loaded = message.get("method") == "Page.loadEventFired"
        if not loaded:
            problems.append("the page did not finish loading")
        measured = json.loads((await call("Runtime.evaluate", expression=MEASURE,
                                          returnByValue=True))["result"]["value"])
        metrics = await call("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"])
        if max_height:
            height = min(height, max_height)
        await call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
                   deviceScaleFactor=1, mobile=False)
        shot = await call("Page.captureScreenshot", format="png",
                          clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        for e in events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                problems.append(f"console {params.get('type')}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                problems.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                problems.append(f"log error: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                requests.append(params.get("request", {}).get("url", ""))
    others = [u for u in requests if u != report.as_uri()]
    return {**measured, "problems": problems, "requests": others, "height": height}


def main():
    report = pathlib.Path(sys.argv[1]).resolve()
    screenshot = pathlib.Path(sys.argv[2]).resolve()
    max_height = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = page_socket(port, time.time() + 30)
            result = asyncio.run(drive(url, report, screenshot, max_height))
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
