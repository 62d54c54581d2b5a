"""The lane display page (web/): where it lives, a loopback web server for it, and its address.

The page is static files; any web server can serve `web/` (with `web/node_modules`, which
`make` fills with `npm ci`). This one is for `lane-agent demo` and the browser tests.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MQTT_MODULE = Path("node_modules/mqtt/dist/mqtt.esm.js")


def page_problem(directory: Path = WEB_DIR) -> str | None:
    """Why the page cannot run from `directory`, with the fix; None when it can."""
    if not (directory / "index.html").is_file():
        return f"no display page at {directory} (it ships in the source tree, not the wheel)"
    if not (directory / MQTT_MODULE).is_file():
        return f"MQTT.js is not installed in {directory}: run `make web` (npm ci in web/)"
    return None


class _Handler(SimpleHTTPRequestHandler):
    """Static files, no directory listings, no access log on the demo's terminal."""

    def list_directory(self, path: Any) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_page(port: int = 0, directory: Path = WEB_DIR) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1:`port` (0: a free one) in a thread; yields the page's URL."""
    handler = functools.partial(_Handler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="display-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def page_url(page: str, *, ws: str, base: str, **extra: str) -> str:
    """The page's address with its settings (docs/display.md) as query parameters."""
    return f"{page}?{urlencode({'ws': ws, 'base': base, **extra})}"
