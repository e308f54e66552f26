"""A real S3 server process (moto's server mode) on 127.0.0.1, and a proxy that injects faults."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import http_server

RENDEZVOUS_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Start ``python -m moto.server`` on a free loopback port; yield its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"casbak-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


class FaultyProxy:
    """Forwards to an S3 server, answering every ``every``-th request with a retryable error.

    It also records what passes: every request line (with its Range header), the
    bytes of the answers, how many requests were at the server at once, and, when
    ``rendezvous`` names a
    path fragment, whether two such requests were ever in flight together.
    ``delay`` (seconds) is added to every request, as a distant server's round trip;
    ``ignore_range`` drops Range headers, as servers without ranged reads do.
    """

    def __init__(
        self,
        upstream: str,
        every: int,
        statuses: tuple[int, ...] = (503, 500),
        delay: float = 0.0,
    ) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.every = every
        self.delay = delay
        self.ignore_range = False
        self.statuses = statuses
        self.requests = 0
        self.injected = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.url = ""
        self.log: list[str] = []
        self.bytes_down = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.rendezvous: str | None = None
        self.waiting = 0
        self.met = False
        self.gave_up = False

    def reset(self, rendezvous: str | None = None) -> None:
        """Forget what was recorded; watch requests whose path holds ``rendezvous``."""
        with self.lock:
            self.log.clear()
            self.bytes_down = 0
            self.max_in_flight = self.in_flight
            self.rendezvous = rendezvous
            self.waiting = 0
            self.met = False
            self.gave_up = False

    def gets(self, fragment: str) -> list[str]:
        """The recorded GET requests whose path holds ``fragment``."""
        with self.lock:
            return [line for line in self.log if line.startswith("GET ") and fragment in line]

    def _arrive(self, line: str, path: str) -> None:
        with self.lock:
            self.log.append(line)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.rendezvous is None or self.rendezvous not in path or self.met:
                return
            if self.gave_up:
                return
            # Held until a second watched request arrives: overlapping requests
            # then meet here whatever the machine's speed, and serial ones
            # never do (the first is released by the timeout, alone).
            self.waiting += 1
            if self.waiting >= 2:
                self.met = True
                self.changed.notify_all()
            elif not self.changed.wait_for(lambda: self.met, timeout=RENDEZVOUS_TIMEOUT):
                self.gave_up = True
            self.waiting -= 1

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            ranged = self.headers.get("Range")
            line = f"{self.command} {self.path}" + (f" {ranged}" if ranged else "")
            proxy._arrive(line, self.path)
            try:
                self._relay()
            finally:
                proxy._leave()

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if proxy.delay:
                time.sleep(proxy.delay)
            with proxy.lock:
                proxy.requests += 1
                fault = proxy.every and proxy.requests % proxy.every == 0
                status = proxy.statuses[proxy.injected % len(proxy.statuses)] if fault else 0
                proxy.injected += bool(fault)
            if fault:
                code = "SlowDown" if status == 503 else "InternalError"
                data = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>injected</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
            dropped = {"host", "range"} if proxy.ignore_range else {"host"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            headers["Host"] = proxy.upstream
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            with proxy.lock:
                proxy.bytes_down += len(data)
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def faulty_proxy(upstream: str, every: int, delay: float = 0.0) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream, every, delay=delay)
    with http_server(_handler(proxy)) as url:
        proxy.url = url
        yield proxy
