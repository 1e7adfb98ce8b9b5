"""FaultInjectingProxy: an HTTP proxy in front of a real OpenAI-compatible server, for tests only.

A seeded share of chat-completion calls gets a fault instead of being forwarded: HTTP 429 (with
``Retry-After: 0``), HTTP 500, a hang past the client's timeout, or a malformed 200 body (cut
JSON or JSON without ``choices``). The rest are forwarded to the real server unchanged. The proxy
counts every call, every fault by kind and every successful upstream answer per prompt (keyed by
:func:`prompt_key` of the request's messages). With ``fault_rate=0`` it is a counting proxy.
``echo_auth_401=True`` answers every call with a 401 whose body echoes the Authorization header,
like a careless server would, to check that the client never leaks the key it sent.
``fail_when(messages)`` (settable at any time; None to recover) answers HTTP 500 to every request
whose messages it picks, e.g. every request for some samples.
``late_attempts=n`` answers the first ``n`` calls of each prompt late: the call is forwarded and the
upstream answer counted in ``upstream_ok`` (the server did the work, and would bill it), then the reply
is held for ``hang_s`` or until the client hangs up, so a client with a shorter timeout never gets it
(fault kind ``late``). Unlike ``hang``, which never reaches upstream, this is the case where one
prompt is billed twice.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx

FAULTS = ("429", "500", "hang", "malformed")


def prompt_key(messages: Any) -> str:
    """A stable id for a prompt's messages (what the proxy counts by)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


class FaultInjectingProxy:
    """Start with ``with FaultInjectingProxy(upstream, fault_rate=0.3, seed=1) as proxy: proxy.base_url``."""

    def __init__(
        self, upstream: str, fault_rate: float = 0.0, seed: int = 0, hang_s: float = 10.0, echo_auth_401: bool = False,
        fail_when: Callable[[Any], bool] | None = None, late_attempts: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault_rate, self.hang_s, self.echo_auth_401 = fault_rate, hang_s, echo_auth_401
        self.rng = random.Random(seed)
        self.fail_when = fail_when
        self.late_attempts = late_attempts
        self.attempts: Counter[str] = Counter()  # calls per prompt key (what late_attempts counts)
        self.picked: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.calls = 0
        self.active = 0
        self.faults: Counter[str] = Counter()
        self.upstream_ok: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._http = httpx.Client(timeout=300)

    @property
    def base_url(self) -> str:
        """The proxy's OpenAI-style base URL (ends in ``/v1``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FaultInjectingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def reset(self) -> None:
        """Zero the counters."""
        with self.lock:
            self.calls = 0
            self.faults.clear()
            self.picked.clear()
            self.upstream_ok.clear()
            self.attempts.clear()

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Wait until no call is being handled (e.g. the request of a killed client has finished upstream)."""
        deadline = time.time() + timeout_s
        while self.active and time.time() < deadline:
            time.sleep(0.02)

    def _pick_fault(self, key: str) -> str | None:
        with self.lock:
            self.calls += 1
            self.attempts[key] += 1
            if self.attempts[key] <= self.late_attempts:
                self.faults["late"] += 1
                return "late"
            if self.rng.random() < self.fault_rate:
                fault = self.rng.choice(FAULTS)
                if fault == "malformed":
                    fault = self.rng.choice(["malformed-cut", "malformed-nochoices"])
                self.faults[fault] += 1
                return fault
            return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout or killed)
                    pass

            def do_GET(self) -> None:  # noqa: N802
                answer = proxy._http.get(proxy.upstream + self.path.removeprefix("/v1"))
                self._reply(answer.status_code, answer.content)

            def do_POST(self) -> None:  # noqa: N802
                with proxy.lock:
                    proxy.active += 1
                try:
                    self._post()
                finally:
                    with proxy.lock:
                        proxy.active -= 1

            def _post(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.echo_auth_401:
                    with proxy.lock:
                        proxy.calls += 1
                    echoed = json.dumps({"error": {"message": f"bad key: {self.headers.get('Authorization')}"}})
                    return self._reply(401, echoed.encode())
                fail_when = proxy.fail_when
                messages = json.loads(body or b"{}").get("messages")
                if fail_when is not None and fail_when(messages):
                    with proxy.lock:
                        proxy.calls += 1
                        proxy.picked[prompt_key(messages)] += 1
                    return self._reply(500, b'{"error": {"message": "injected: this sample always fails"}}')
                fault = proxy._pick_fault(prompt_key(messages))
                if fault == "429":
                    return self._reply(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0"})
                if fault == "500":
                    return self._reply(500, b'{"error": {"message": "injected server error"}}')
                if fault == "hang":
                    deadline = time.time() + proxy.hang_s
                    while time.time() < deadline and not proxy.stopping.is_set():
                        time.sleep(0.05)
                    self.close_connection = True
                    return None
                if fault == "malformed-cut":
                    return self._reply(200, b'{"id": "x", "choices": [{"message": {"content": "tru')
                if fault == "malformed-nochoices":
                    return self._reply(200, b'{"id": "x", "object": "chat.completion"}')
                answer = self._forward(body)
                if fault == "late":  # the server answered; hold the reply until the client has given up
                    deadline = time.time() + proxy.hang_s
                    while time.time() < deadline and not proxy.stopping.is_set():
                        if select.select([self.connection], [], [], 0.05)[0]:  # the client hung up (EOF)
                            break
                    self.close_connection = True
                self._reply(answer.status_code, answer.content)
                return None

            def _forward(self, body: bytes) -> httpx.Response:
                """Send the call upstream; a 200 answer is counted in ``upstream_ok`` under its prompt."""
                answer = proxy._http.post(
                    proxy.upstream + self.path.removeprefix("/v1"), content=body,
                    headers={"Content-Type": "application/json"},
                )
                if answer.status_code == 200:
                    with proxy.lock:
                        proxy.upstream_ok[prompt_key(json.loads(body).get("messages"))] += 1
                return answer

        return Handler
