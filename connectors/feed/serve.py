"""The feed served from a background thread on a port of its own: for tests and embedding."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from connectors.feed.app import BOARD, build_feed
from connectors.feed.board import AlertBoard
from connectors.feed.users import UserStore
from streams.settings import Settings


class FeedThread:
    def __init__(self, settings: Settings, users: UserStore, **options: Any) -> None:
        self.settings = settings
        self.url = f"http://{settings.feed_host}:{settings.feed_port}"
        self._users = users
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.board: AlertBoard | None = None

    def start(self) -> FeedThread:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            app = build_feed(self.settings, self._users, **self._options)
            self.board = app[BOARD]
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.settings.feed_host, self.settings.feed_port).start()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="feed", daemon=True)
        self._thread.start()
        if not ready.wait(60):
            raise TimeoutError("the feed did not start within 60 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(30)

    def __enter__(self) -> FeedThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
