"""A fault-injecting HTTP proxy in front of moto (test code): the faults AWS clients meet at scale.

Each request is forwarded to the upstream server unless a fault is drawn for it (deterministically, from
a seeded generator): a throttling answer in the request's own protocol (``ThrottlingException`` for JSON
protocols, ``Throttling`` / ``RequestLimitExceeded`` for query protocols, ``503 SlowDown`` for S3), or a
connection dropped without an answer. Faults are injected *before* forwarding, so a faulted request never
reaches moto (what AWS does when it throttles). ``deny`` rules answer ``AccessDenied`` for requests whose
SigV4 credential scope names a given region (and, optionally, service) — a permanent refusal for one scope.

Nothing here patches boto3: clients talk to the proxy over HTTP, like to any endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


@dataclass
class FaultProxy:
    upstream: str
    rate: float = 0.0
    seed: int = 1
    deny: list[tuple[str, str | None]] = field(default_factory=list)  # (region, service or None)
    counts: Counter[str] = field(default_factory=Counter)
    server: ThreadingHTTPServer | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def draw(self) -> str | None:
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(("throttle", "throttle", "slowdown", "drop"))


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization") or ""
            scope = _SCOPE.search(auth)
            region, service = (scope["region"], scope["service"]) if scope else ("", "")
            amz_target = self.headers.get("X-Amz-Target") or ""
            if any(region == r and (s is None or s == service) for r, s in proxy.deny):
                proxy.counts["denied"] += 1
                return self._error(403, "AccessDenied", "denied by the test proxy", amz_target, service)
            fault = proxy.draw()
            if fault == "drop":
                proxy.counts["dropped"] += 1
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            if fault == "throttle" and service != "s3":
                proxy.counts["throttled"] += 1
                if amz_target:
                    return self._error(400, "ThrottlingException", "Rate exceeded", amz_target, service)
                code = "RequestLimitExceeded" if service == "ec2" else "Throttling"
                return self._error(400, code, "Rate exceeded", amz_target, service)
            if fault is not None:  # slowdown, and throttling of S3
                proxy.counts["slowdown"] += 1
                return self._error(503, "SlowDown", "Please reduce your request rate.", amz_target, service)
            proxy.counts["forwarded"] += 1
            self._forward(body)

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        def _error(self, status: int, code: str, message: str, amz_target: str, service: str) -> None:
            if amz_target:
                payload = f'{{"__type": "{code}", "message": "{message}"}}'
                ctype = "application/x-amz-json-1.1"
            elif service == "s3":
                payload = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"
                ctype = "application/xml"
            elif service == "ec2":
                payload = (
                    f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                    "<RequestID>proxy</RequestID></Response>"
                )
                ctype = "text/xml"
            else:
                payload = (
                    f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                    "</Error><RequestId>proxy</RequestId></ErrorResponse>"
                )
                ctype = "text/xml"
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if amz_target:
                self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextlib.contextmanager
def fault_proxy(
    upstream: str, *, rate: float = 0.0, seed: int = 1, deny: list[tuple[str, str | None]] | None = None
) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` to ``upstream`` on a free loopback port for the ``with`` block."""
    proxy = FaultProxy(upstream=upstream, rate=rate, seed=seed, deny=list(deny or []))
    proxy._rng.seed(seed)
    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.server.daemon_threads = True
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=5)
