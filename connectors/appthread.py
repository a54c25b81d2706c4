"""An aiohttp app served from a thread with its own event loop: the feed and the gateway embedded in
tests and tools, next to code (Playwright, blocking clients) that owns the main thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class AppThread:
    """``factory`` builds the app inside the thread's loop (some apps make loop-bound objects).
    Port 0 takes a free port; ``url`` tells which. Long-lived handlers (SSE) should end on the
    app's ``on_shutdown``, since ``stop()`` waits at most ``shutdown_timeout`` for them."""

    def __init__(
        self,
        factory: Callable[[], web.Application],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "app",
        shutdown_timeout: float = 5.0,
    ) -> None:
        self._factory = factory
        self._host, self._port = host, port
        self._shutdown_timeout = shutdown_timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)
        return self.url

    async def _start(self) -> str:
        self.app = self._factory()
        self.runner = web.AppRunner(self.app, shutdown_timeout=self._shutdown_timeout, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self._host, self._port).start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        try:
            if self.runner is not None:
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
