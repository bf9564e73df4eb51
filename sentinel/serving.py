"""`sentinel serve`'s HTTP server: uvicorn's, stopping within seconds on Ctrl-C or SIGTERM and
saying what it does meanwhile (issue 18: it took 22 s, in silence).

Stopping: new connections are refused, idle keep-alive connections closed, requests still
running after server.shutdown_timeout_s cancelled, then the app's loop services stop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from typing import Any

import uvicorn

log = logging.getLogger("sentinel.serve")


class ProgressServer(uvicorn.Server):
    """uvicorn's Server, with a line for each step of its shutdown."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        began = time.monotonic()
        state = self.server_state
        log.info(
            "stopping: draining %d request(s) on %d connection(s), for at most %g s...",
            len(state.tasks),
            len(state.connections),
            self.config.timeout_graceful_shutdown,
        )
        app_shutdown = self.lifespan.shutdown

        async def then_the_app() -> None:
            log.info(
                "stopping: requests drained in %.1f s; stopping the loop services...",
                time.monotonic() - began,
            )
            await app_shutdown()

        self.lifespan.shutdown = then_the_app
        await super().shutdown(sockets)
        log.info("stopped in %.1f s", time.monotonic() - began)


def serve(app: Any, *, workers: int = 1, **config: Any) -> None:
    """Run `app` (an ASGI app, or with workers > 1 an import string of a factory) until a
    signal stops it. Exits 3 if it never started (the port taken, the app failing)."""
    if workers > 1:
        # uvicorn's supervisor starts and stops the worker processes (each a plain Server).
        uvicorn.run(app, workers=workers, factory=True, **config)
        return
    server = ProgressServer(uvicorn.Config(app, **config))
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: uvicorn's force exit
        server.run()
    if not server.started:
        sys.exit(3)
