"""``{"backend": "syslog", "address": "127.0.0.1:5514", "protocol": "udp", "format": "cef"}``:
RFC 5424 messages over UDP (one per datagram), TCP or TLS (RFC 6587 octet counting,
RFC 5425). Options: ``facility`` (number or name, default ``"authpriv"``), ``app_name``,
``hostname``, ``timeout``; for TLS ``ca_file`` and ``verify`` (default True) and
``server_hostname``.

TCP and TLS connections are kept between rounds; one the receiver closed is noticed before
the next write and opened again. UDP has no acknowledgement: a receiver that is down loses
datagrams silently, so prefer tcp or tls where every line matters.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
from typing import Any

from django.utils.translation import gettext as _

from tracking.forwarding.message import Message

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
    "clock": 15, **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "": 6}
PROTOCOLS = ("udp", "tcp", "tls")


def split_address(address: Any) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` → (host, port); ValueError when it is not one."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f'address must be "host:port", got {address!r}')
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'address must be "host:port", got {address!r}')
    return host, int(port)


def _field(value: str, limit: int) -> str:
    # RFC 5424 header fields: printable US-ASCII without spaces, or "-".
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


class SyslogTransport:
    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        try:
            split_address(options.get("address"))
        except ValueError as exc:
            problems.append(str(exc))
        if options.get("protocol", "udp") not in PROTOCOLS:
            problems.append(
                _("protocol must be one of %(choices)s") % {"choices": ", ".join(PROTOCOLS)}
            )
        facility = options.get("facility", "authpriv")
        if facility not in FACILITIES and facility not in range(24):
            problems.append(
                _("facility must be 0-23 or a name (%(names)s)") % {"names": ", ".join(FACILITIES)}
            )
        ca_file = options.get("ca_file")
        if ca_file is not None and not os.path.isfile(str(ca_file)):
            problems.append(_("ca_file %(path)r does not exist") % {"path": ca_file})
        return problems

    def __init__(self, options: dict[str, Any]) -> None:
        self.host, self.port = split_address(options["address"])
        self.protocol = options.get("protocol", "udp")
        facility = options.get("facility", "authpriv")
        # validate() accepted a facility name or a number 0-23.
        self.facility: int = FACILITIES[facility] if isinstance(facility, str) else facility
        self.app_name = _field(str(options.get("app_name", "django-tracking")), 48)
        self.hostname = _field(str(options.get("hostname") or socket.gethostname()), 255)
        self.timeout = float(options.get("timeout", 10))
        self.options = options
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def frame(self, message: Message) -> bytes:
        pri = self.facility * 8 + SEVERITY.get(message.severity or "", 6)
        stamp = message.timestamp.isoformat().replace("+00:00", "Z")
        msgid = _field(message.kind.upper(), 32)
        line = f"<{pri}>1 {stamp} {self.hostname} {self.app_name} {os.getpid()} {msgid} - {message.text}"
        return line.encode("utf-8")

    def send(self, messages: list[Message]) -> None:
        frames = [self.frame(m) for m in messages]
        with self._lock:
            if self.protocol == "udp":
                self._send_udp(frames)
                return
            data = b"".join(b"%d %s" % (len(f), f) for f in frames)
            sock = self._connection()
            try:
                sock.sendall(data)
            except OSError:
                self.close()
                raise

    def _send_udp(self, frames: list[bytes]) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            for frame in frames:
                sock.sendto(frame, (self.host, self.port))

    def _connection(self) -> socket.socket:
        if self._sock is not None and self._closed_by_peer(self._sock):
            self.close()
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.protocol == "tls":
                context = ssl.create_default_context(cafile=self.options.get("ca_file"))
                if self.options.get("verify", True) is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                server = self.options.get("server_hostname") or self.host
                raw = context.wrap_socket(raw, server_hostname=server)
            self._sock = raw
        return self._sock

    @staticmethod
    def _closed_by_peer(sock: socket.socket) -> bool:
        try:
            readable, _unused, _unused = select.select([sock], [], [], 0)
            if not readable:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return True  # a syslog receiver never writes: readable means it closed
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
