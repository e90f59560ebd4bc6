"""The pipeline's embedded rating page must not reconfigure the caller's logging."""

import logging

from gemmaforge.lifecycle.human import page_server


class Recording(logging.NullHandler):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_page_server_leaves_the_callers_log_handlers_open():
    """uvicorn's default log config closed every handler (absl's closes its stream, pytest's capture
    file among them, which crashed the suite)."""
    handler = Recording()
    logging.getLogger().addHandler(handler)
    try:
        page_server(lambda scope, receive, send: None, port=1)
        assert not handler.closed and handler in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(handler)
