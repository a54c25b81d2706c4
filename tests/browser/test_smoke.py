"""Smoke test of the browser set-up: a tiny aiohttp app in real headless Chromium.

A button whose click runs JS (a fetch to the app, then a text change), and a server-sent events
stream whose two events the page appends to a list through ``EventSource``. Screenshots go to
test-results/screenshots/test_smoke_page_*.png.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

INDEX = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Pora browser smoke</title>
  <style>
    body { font-family: sans-serif; margin: 2rem; }
    #status { font-weight: bold; }
    li { color: #064; }
  </style>
</head>
<body>
  <h1>Pora browser smoke</h1>
  <p>Status: <span id="status">idle</span></p>
  <button id="ping" type="button">Ping the server</button>
  <h2>Events</h2>
  <p>Stream: <span id="stream">connecting</span></p>
  <ul id="events"></ul>
  <script>
    document.getElementById("ping").addEventListener("click", async () => {
      const reply = await (await fetch("/ping", {method: "POST"})).json();
      document.getElementById("status").textContent = "pong " + reply.n;
    });
    const source = new EventSource("/events");
    source.onopen = () => { document.getElementById("stream").textContent = "open"; };
    source.addEventListener("alert", (event) => {
      const item = document.createElement("li");
      item.textContent = JSON.parse(event.data).text;
      document.getElementById("events").append(item);
    });
  </script>
</body>
</html>
"""
EVENTS = [{"text": "first alert: KANIM-BATAM"}, {"text": "second alert: KANIM-MEDAN"}]
CLOSING = web.AppKey("closing", asyncio.Event)
PINGS = web.AppKey("pings", list[int])


def make_app() -> web.Application:
    app = web.Application()
    app[PINGS] = []

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX, content_type="text/html")

    async def ping(request: web.Request) -> web.Response:
        request.app[PINGS].append(1)
        return web.json_response({"n": len(request.app[PINGS])})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for number, event in enumerate(EVENTS, 1):
            await response.write(f"id: {number}\nevent: alert\ndata: {json.dumps(event)}\n\n".encode())
            await asyncio.sleep(0.2)
        # keep the stream open (a closed one makes EventSource reconnect and get both again)
        await request.app[CLOSING].wait()
        return response

    async def on_startup(app: web.Application) -> None:
        app[CLOSING] = asyncio.Event()  # made in the server's loop

    async def on_shutdown(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_post("/ping", ping)
    app.router.add_get("/events", events)
    return app


def test_smoke_page(page: Page, serve_app: Callable[[web.Application], str], screenshots: Callable[..., Path]) -> None:
    app = make_app()
    url = serve_app(app)

    response = page.goto(url + "/")
    assert response is not None and response.ok
    expect(page).to_have_title("Pora browser smoke")
    expect(page.locator("#status")).to_have_text("idle")
    screenshots("1-loaded")

    page.click("#ping")
    expect(page.locator("#status")).to_have_text("pong 1")
    screenshots("2-clicked")

    events = page.locator("#events li")
    expect(events).to_have_count(2)
    expect(events).to_have_text([event["text"] for event in EVENTS])
    expect(page.locator("#stream")).to_have_text("open")
    screenshots("3-events")

    assert app[PINGS] == [1]
    assert page.evaluate("document.querySelectorAll('#events li').length") == 2
    assert page.inner_text("#status") == "pong 1"
