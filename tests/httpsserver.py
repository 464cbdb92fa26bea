"""A real HTTPS server on 127.0.0.1 that answers by the request's Host header.

Each host gets a :class:`Page`: status, content type, body, and an optional
delay before the reply. The certificate is signed by the test CA
(tests/tlscerts.py) for the names given, so clients that trust only the test
CA verify it exactly as they would a real server.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Page:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    delay: float = 0.0  # seconds before the reply
    headers: dict[str, str] = field(default_factory=dict)


class HTTPSTestServer:
    """``pages``: host -> Page; anything else is a 404. ``requests`` logs (host, path)."""

    def __init__(self, cert_file: Path, key_file: Path, pages: dict[str, Page]) -> None:
        self.pages = pages
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                server.requests.append((host, self.path))
                page = server.pages.get(host, Page(b"not found", status=404))
                if page.delay:
                    time.sleep(page.delay)
                try:
                    self.send_response(page.status)
                    self.send_header("Content-Type", page.content_type)
                    self.send_header("Content-Length", str(len(page.body)))
                    for name, value in page.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(page.body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the client gave up first (a timeout under test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> HTTPSTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
