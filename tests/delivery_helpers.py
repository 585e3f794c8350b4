"""Local receivers for alert and forwarding tests (loopback only): an HTTP server, UDP and
TCP syslog listeners; and event builders."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tracking.events import Event

UTC = timezone.utc

HOSTILE_SECRET = "s3cr3t-T0KEN-4242"


class HttpReceiver:
    """Records every POST (headers, raw body); answers ``status`` (set 503 to fail)."""

    def __init__(self, status: int = 200, answer: bytes = b"{}") -> None:
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.status = status
        self.answer = answer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.status < 300:
                    receiver.requests.append((dict(self.headers.items()), body, self.path))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[bytes]:
        return [body for _, body, _ in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UdpListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode("utf-8"))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


class TcpListener:
    """RFC 6587 octet-counting syslog receiver (``port`` fixed so it can come back); with
    ``tls`` (an ``ssl.SSLContext``), RFC 5425 syslog over TLS."""

    def __init__(self, port: int = 0, tls=None) -> None:
        self.tls = tls
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(5)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.messages: list[str] = []
        self.stopping = False
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn.settimeout(5)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ValueError):
                    conn.close()
                    continue
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.2)
        while not self.stopping:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b" " in buf:
                length, _, rest = buf.partition(b" ")
                if len(rest) < int(length):
                    break
                self.messages.append(rest[: int(length)].decode("utf-8"))
                buf = rest[int(length) :]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self.stopping = True
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.thread.join(2)
        self.server.close()


def failed_logins(
    n: int, *, ip: str = "203.0.113.77", username: str = "victim", start=None
) -> list[Event]:
    """A brute-force campaign: ``n`` failed logins, 5 s apart, with hostile request content."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    return [
        Event(
            type="AUTH",
            timestamp=start + timedelta(seconds=5 * i),
            username=username,
            ip_address=ip,
            endpoint="/accounts/login/",
            method="POST",
            status=401,
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            headers={"X-Api-Key": HOSTILE_SECRET, "Authorization": f"Bearer {HOSTILE_SECRET}"},
            params={"password": HOSTILE_SECRET, "note": f"my key is {HOSTILE_SECRET}"},
        )
        for i in range(n)
    ]


def flagged_event(**fields) -> Event:
    """One activity flagged by an imported verdict (no detector needed)."""
    values = {
        "type": "PAYMENT",
        "username": "alice",
        "ip_address": "198.51.100.9",
        "endpoint": "/pay/",
        "method": "POST",
        "status": 200,
        "headers": {"X-Token": HOSTILE_SECRET},
        "params": {"card": HOSTILE_SECRET},
        "verdict": {"flagged": True, "tags": ["fraud"], "severity": "high", "risk_score": 0.93},
    }
    values.update(fields)
    return Event(**values)


def plain_event(**fields) -> Event:
    values = {
        "type": "API",
        "username": "bob",
        "ip_address": "192.0.2.10",
        "endpoint": "/api/things/",
        "method": "GET",
        "status": 200,
        "headers": {"Cookie": f"sessionid={HOSTILE_SECRET}"},
        "params": {"q": HOSTILE_SECRET},
    }
    values.update(fields)
    return Event(**values)


def ndjson(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, written to ``directory``: (cert, key) paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path
