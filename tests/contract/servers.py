"""Real HTTP servers on loopback for the blob-store contract: the GCS emulator, moto's S3 server,
and a small proxy in front of each that can answer with an injected status (403, 503, ...) or
corrupt a download, so the real client libraries meet real failures over real HTTP."""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Fault:
    status: int
    body: bytes
    content_type: str
    method: str | None = None
    path: str | None = None  # a regex searched in the request path
    times: int | None = 1  # None: every matching request
    corrupt: bool = False  # forward the request but flip one byte of the answer's body

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path is None or re.search(self.path, path) is not None))


class FaultProxy:
    """Forwards to `upstream` (host, port), streaming bodies, unless a queued fault matches."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int]] = []  # method, path, status answered
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, status: int, body: bytes = b"", content_type: str = "application/json",
             **when: object) -> None:
        with self._lock:
            self.faults.append(Fault(status, body, content_type, **when))  # type: ignore[arg-type]

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(h.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        fault = self._take_fault(h.command, h.path)
        if fault is not None and not fault.corrupt:
            self.seen.append((h.command, h.path, fault.status))
            h.send_response(fault.status)
            h.send_header("Content-Type", fault.content_type)
            h.send_header("Content-Length", str(len(fault.body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(fault.body)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream.request(h.command, h.path, body=body, headers=headers)
        answer = upstream.getresponse()
        self.seen.append((h.command, h.path, answer.status))
        h.send_response(answer.status)
        length = answer.getheader("Content-Length")
        for k, v in answer.getheaders():
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                h.send_header(k, v)
        if h.command == "HEAD" or answer.status in (204, 304):
            h.send_header("Content-Length", length or "0")
            h.end_headers()
            upstream.close()
            return
        if length is None:  # upstream framed it itself; re-frame with a length
            data = answer.read()
            length = str(len(data))
        else:
            data = None
        h.send_header("Content-Length", length)
        h.end_headers()
        flip = fault is not None and fault.corrupt
        while block := (data if data is not None else answer.read(1024 * 1024)):
            if flip:
                block = bytes([block[0] ^ 0xFF]) + block[1:]
                flip = False
            h.wfile.write(block)
            if data is not None:
                break
        upstream.close()
