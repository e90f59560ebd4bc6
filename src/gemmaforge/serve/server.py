"""Running the app under uvicorn, with a shutdown that ends in exit status 0."""

from __future__ import annotations

import signal

import uvicorn


class Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM/SIGINT end it normally once the graceful shutdown is
    done (uvicorn re-raises the signal afterwards, which kills the process with status 143)."""

    def handle_exit(self, sig: int, frame) -> None:
        self.force_exit = self.should_exit and sig == signal.SIGINT  # a second Ctrl-C: stop waiting
        self.should_exit = True


def run(app, host: str, port: int, grace_period: float, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT: stop accepting, let running requests finish (at most
    `grace_period` seconds), stop the engine, return."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=grace_period)
    Server(config).run()
