"""The one HTTP client of alerts and forwarders (the standard library's; no extra dependency)."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit


class DeliveryError(Exception):
    """A receiver refused or could not be reached (the message stays pending)."""


def valid_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> bytes:
    """POST ``body``; the response body on 2xx, ``DeliveryError`` otherwise."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked by valid_url
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from {urlsplit(url).netloc}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DeliveryError(f"{urlsplit(url).netloc} unreachable: {exc}") from exc
