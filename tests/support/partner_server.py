"""A stand-in partner platform (110, 12345, 矛调) for tests and bench scripts.

A real HTTP server on a loopback port in a thread. It checks every callback it receives the
way a partner should — known key, timestamp within the window, nonce not seen before, HMAC
signature over the request — records it, and answers 200 (or 401 when the signature fails).
``fail_next(n)`` makes it answer the next ``n`` callbacks with an error, to exercise retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CALLBACK_PATH = "/callbacks/gridgov/status"


@dataclass(frozen=True)
class Callback:
    """One request the stand-in received, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    problem: str | None
    answered: int

    @property
    def json(self) -> Any:
        """Return the body as JSON."""
        return json.loads(self.body)


class PartnerServer:
    """A partner's callback endpoint that verifies gridgov's signed status pushes."""

    def __init__(self, *, window_seconds: int = 300) -> None:
        self.window_seconds = window_seconds
        self.secrets: dict[str, str] = {}
        self.callbacks: list[Callback] = []
        self._nonces: set[str] = set()
        self._fail = 0
        self._fail_status = 503
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------------

    def add_key(self, key_id: str, secret: str) -> None:
        """Trust a key (the partner was given its secret when the key was made)."""
        with self._lock:
            self.secrets[key_id] = secret

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` well-signed callbacks with ``status`` (a partner outage)."""
        with self._lock:
            self._fail, self._fail_status = n, status

    def accepted(self) -> list[Callback]:
        """Return the callbacks that were verified and answered 2xx, in arrival order."""
        with self._lock:
            return [c for c in self.callbacks if c.signature_ok and 200 <= c.answered < 300]

    def clear(self) -> None:
        """Forget what was received."""
        with self._lock:
            self.callbacks.clear()

    @property
    def url(self) -> str:
        """Return the callback URL to configure on the partner."""
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{CALLBACK_PATH}"

    def start(self) -> PartnerServer:
        """Start serving on a free loopback port."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> PartnerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- checking and answering --------------------------------------------------------------

    def _check(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Return why a callback's signature is not acceptable, or None."""
        key, ts = headers.get("x-gridgov-key", ""), headers.get("x-gridgov-timestamp", "")
        nonce = headers.get("x-gridgov-nonce", "")
        signature = headers.get("x-gridgov-signature", "")
        secret = self.secrets.get(key)
        if secret is None:
            return f"unknown key {key!r}"
        if not ts.isdigit() or abs(time.time() - int(ts)) > self.window_seconds:
            return "stale timestamp"
        message = "\n".join(("POST", path, ts, nonce, hashlib.sha256(body).hexdigest()))
        expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "signature mismatch"
        if nonce in self._nonces:
            return "replayed nonce"
        self._nonces.add(nonce)
        return None

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            problem = self._check(path, headers, body)
            if problem is not None:
                status = 401
            elif self._fail > 0:
                self._fail -= 1
                status = self._fail_status
            else:
                status = 200
            self.callbacks.append(Callback(path, headers, body, problem is None, problem, status))
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = outer._answer(self.path, headers, body)
                reply = json.dumps({"ok": 200 <= status < 300}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        return Handler
