"""Real receivers for the alert tests: a JSON webhook (HTTP) and an SMTP server (aiosmtpd), both on
127.0.0.1, recording what arrives."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


class Webhook:
    """Apprise's ``json://`` target: records each POSTed body; ``fail_next`` answers HTTP 500."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.fail_next = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hook.fail_next:
                    hook.fail_next -= 1
                    self.send_response(500)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An SMTP server: ``messages`` holds (subject, plain-text body) of each e-mail received."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.messages: list[tuple[str, str]] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
                message = message_from_bytes(envelope.content, policy=policy.default)
                part = message.get_body(preferencelist=("plain", "html"))
                box.messages.append((str(message["Subject"]), part.get_content() if part else ""))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=ads-ml@example.com&to=team@example.com"

    def stop(self) -> None:
        self.controller.stop()
