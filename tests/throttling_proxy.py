"""An HTTP proxy in front of the moto server that throttles the first requests it gets
(and, if asked, drops downloads half-way).

The clients under test talk to it over real HTTP (``endpoint_url=proxy.endpoint_url``): it
answers the first ``throttle`` requests the way S3 or DynamoDB throttle (HTTP 503
``SlowDown``, HTTP 400 ``ProvisionedThroughputExceededException``) and forwards every other
request to moto unchanged, so retrying with backoff is tested without patching a client.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_S3_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_DYNAMODB_THROTTLED = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
    b'"message":"The level of configured provisioned throughput for the table was exceeded."}'
)


class ThrottlingProxy:
    """A running proxy; ``throttled`` counts the requests it refused."""

    def __init__(self, target: str, throttle: int, service: str, cut: int = 0) -> None:
        self.target = urlsplit(target)
        self.remaining = throttle
        self.cut = cut
        self.cuts = 0
        self.service = service
        self.throttled = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    refuse = proxy.remaining > 0
                    if refuse:
                        proxy.remaining -= 1
                        proxy.throttled += 1
                    else:
                        proxy.forwarded += 1
                if refuse:
                    self._refuse()
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = proxy.target.netloc
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in (
                            "transfer-encoding",
                            "content-length",
                            "connection",
                        ):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    with proxy.lock:
                        cut = self.command == "GET" and len(data) > 4096 and proxy.cut > 0
                        if cut:
                            proxy.cut -= 1
                            proxy.cuts += 1
                    if cut:  # half the body, then the connection drops
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    elif self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            def _refuse(self) -> None:
                if proxy.service == "dynamodb":
                    status, data, kind = 400, _DYNAMODB_THROTTLED, "application/x-amz-json-1.0"
                else:
                    status, data, kind = 503, _S3_SLOW_DOWN, "application/xml"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


@contextmanager
def throttling_proxy(
    target: str, throttle: int, service: str = "s3", cut: int = 0
) -> Iterator[ThrottlingProxy]:
    """Run a :class:`ThrottlingProxy` to ``target`` until the block ends; it also cuts the
    first ``cut`` object downloads (over 4 KiB) half-way through their bodies."""
    proxy = ThrottlingProxy(target, throttle, service, cut)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join()
