"""The feed served from a background thread on a port of its own: for tests and embedding."""

from __future__ import annotations

from typing import Any

from connectors.appthread import AppThread
from connectors.feed.app import BOARD, build_feed
from connectors.feed.board import AlertBoard
from connectors.feed.users import UserStore
from streams.settings import Settings


class FeedThread:
    def __init__(self, settings: Settings, users: UserStore, **options: Any) -> None:
        self.settings = settings
        self._server = AppThread(
            lambda: build_feed(settings, users, **options), settings.feed_host, settings.feed_port, name="feed"
        )
        self.url = ""
        self.board: AlertBoard | None = None

    def start(self) -> FeedThread:
        self.url = self._server.start()
        assert self._server.app is not None
        self.board = self._server.app[BOARD]
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FeedThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
