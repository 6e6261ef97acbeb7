"""Loopback stand-ins for broken endpoints (pure test helpers)."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@contextmanager
def silent_listener() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers."""
    with _tcp_listener(lambda conn: [conn]) as endpoint:
        yield endpoint


def closed_port_endpoint() -> str:
    """An endpoint on a port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def header_stripping_proxy(
    upstream: str,
    access_key: str,
    secret_key: str,
    strip: str = "If-None-Match",
    fail_delete: Callable[[str], bool] | None = None,
    fail_put: Callable[[str], bool] | None = None,
    missing: Callable[[str], bool] | None = None,
) -> Iterator[str]:
    """A loopback S3 proxy that drops one header and re-signs the request.

    It stands for an S3 server that ignores conditional writes; with
    ``fail_delete``, also for one whose DELETE of some paths fails with
    InternalError (a replicated server routing those keys to a member that left); with
    ``fail_put``, for one that answers some PUTs 503 SlowDown (a member rejoining); with
    ``missing``, for one that answers GET and HEAD of some paths 404 NoSuchKey (the state key
    looks gone). ``strip=""`` drops nothing.
    """
    target = urlsplit(upstream)
    credentials = Credentials(access_key, secret_key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            if self.command in ("GET", "HEAD") and missing and missing(path):
                error = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
                self.send_response(404)
                self.send_header("Content-Type", "application/xml")
                self.send_header(
                    "Content-Length", "0" if self.command == "HEAD" else str(len(error))
                )
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(error)
                return
            if self.command == "PUT" and fail_put and fail_put(path):
                error = b"<Error><Code>SlowDown</Code><Message>reduce your rate</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            if self.command == "DELETE" and fail_delete and fail_delete(path):
                error = b"<Error><Code>InternalError</Code><Message>member left</Message></Error>"
                self.send_response(500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower()
                not in {
                    strip.lower() or "-",
                    "authorization",
                    "x-amz-date",
                    "host",
                    "x-amz-content-sha256",
                    "connection",
                }
            }
            request = AWSRequest(
                method=self.command, url=f"{upstream}{self.path}", data=body, headers=headers
            )
            S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            try:
                connection.request(
                    self.command, self.path, body=body, headers=dict(request.headers.items())
                )
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            finally:
                connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    with _serving(Handler) as endpoint:
        yield endpoint


@contextmanager
def missing_key_server() -> Iterator[str]:
    """An S3 stand-in that answers every request 404 (a HEAD of any key: NoSuchKey),
    with HTTP/1.1 keep-alive unless the client asks to close."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _missing(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _missing

    with _serving(Handler) as endpoint:
        yield endpoint


@contextmanager
def round_robin_proxy(upstreams: list[str]) -> Iterator[str]:
    """A TCP forwarder that sends each new connection to the next upstream in turn,
    as a Service in front of several backends does."""
    targets = [urlsplit(u) for u in upstreams]
    turn = itertools.count()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def forward(client: socket.socket) -> list[socket.socket]:
        target = targets[next(turn) % len(targets)]
        upstream = socket.create_connection((target.hostname, target.port), timeout=2)
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()
        return [client, upstream]

    with _tcp_listener(forward) as endpoint:
        yield endpoint


class Switch:
    """Whether a :func:`switchable_proxy` passes connections on (``up``) or drops them."""

    up = True


@contextmanager
def switchable_proxy(upstream: str, switch: Switch) -> Iterator[str]:
    """A TCP forwarder to ``upstream`` that, while ``switch.up`` is False, closes every new
    connection at once (the service is down) and drops the ones it holds."""
    held: list[socket.socket] = []
    with round_robin_proxy([upstream]) as inner:
        target = urlsplit(inner)

        def forward(client: socket.socket) -> list[socket.socket]:
            if not switch.up:
                client.close()
                return []
            upstream_socket = socket.create_connection((target.hostname, target.port), timeout=2)
            upstream_socket.settimeout(None)

            def pump(source: socket.socket, sink: socket.socket) -> None:
                try:
                    while switch.up and (data := source.recv(65536)):
                        sink.sendall(data)
                except OSError:
                    pass
                finally:
                    for end in (source, sink):
                        with suppress(OSError):
                            end.shutdown(socket.SHUT_RDWR)

            for source, sink in ((client, upstream_socket), (upstream_socket, client)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()
            held.extend([client, upstream_socket])
            return [client, upstream_socket]

        with _tcp_listener(forward) as endpoint:
            yield endpoint


@contextmanager
def _tcp_listener(
    on_accept: Callable[[socket.socket], list[socket.socket]],
) -> Iterator[str]:
    """Accept TCP connections on a free loopback port and hand each to ``on_accept``,
    which returns the sockets to close at the end; yields the http:// endpoint."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.extend(on_accept(conn))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a race of 8 conditional PUTs beside the
    # prober's HEADs could overflow it, the kernel would drop a SYN and the client's connect
    # would time out (what no real S3 server, whose backlog is hundreds, would do)
    request_queue_size = 128


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields its http:// endpoint."""
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
