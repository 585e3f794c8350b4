"""The request thread's share of ``@track(async_log=True)`` inside whole requests, by part.

``costs.py``'s first figure times the tracked view called alone in a loop, so the tracking
code and its data stay in the CPU's caches from one call to the next. In a server they
likely do not: between two events the thread runs Django's whole request cycle (the WSGI
handler, every middleware, the URL resolver, the response), and the same work measures
1.3 to 1.7 times as much CPU there (benchmarks/README.md). Here each request goes through Django's
WSGI handler with the benchmark's headers, and each part is switched off in turn by
patching it in this process only:

- the untracked view;
- the tracked view with recording switched off: the decorator's claim and context;
- + the event built (``build_event``, redaction included) and handed to nobody;
- + journaled (JSON, AES-GCM, one ``write()``) and queued to a list instead of the writer.

The variants alternate in rounds; each figure is the least CPU per request of its rounds
(``time.thread_time``: this thread only, the writer thread does not run). The writer's
thread, publishing or storing, is not part of these figures.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest import mock

ROUNDS = 5


def environ(path: str, ip: str, user_agent: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for wrk's GET (``overhead._lua_script``)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_FORWARDED_FOR": ip,
        "HTTP_USER_AGENT": user_agent,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def increments(best: dict[str, float], order: list[str]) -> dict[str, float]:
    """Each variant's CPU minus the one before it in ``order`` (the first is the baseline)."""
    return {name: best[name] - best[prev] for prev, name in zip(order, order[1:], strict=False)}


def measure(
    variants: dict[str, tuple[str, Callable[[], AbstractContextManager]]],
    n: int,
    ips: list[str],
    user_agents: list[str],
) -> dict[str, float]:
    """Least CPU (µs) per whole request of each variant ``name -> (path, patches)`` over
    ``ROUNDS`` alternating rounds of ``n`` requests."""
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()

    def start_response(status, headers, exc_info=None):
        return None

    def serve(path: str, count: int) -> float:
        envs = [
            environ(path, ips[i % len(ips)], user_agents[i % len(user_agents)])
            for i in range(count)
        ]
        cpu = time.thread_time()
        for env in envs:
            response = app(env, start_response)
            b"".join(response)
            response.close()
        return (time.thread_time() - cpu) / count * 1e6

    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, (path, patches) in variants.items():
            with patches():
                serve(path, min(n, 500))  # warm: this variant's code and statements
                per = serve(path, n)
            best[name] = min(best.get(name, per), per)
    return best


def run(emit: Callable, n: int, alone: float) -> None:
    """Emit the figures; ``alone`` is costs.py's figure for the same work called alone."""
    from benchmarks.report import Figure
    from benchmarks.workload import BROWSERS, client_addresses
    from tracking.capture import decorators
    from tracking.capture.tracker import ActivityTracker
    from tracking.pipeline import journal, writer

    queued: list = []

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    def journaled() -> AbstractContextManager:
        return mock.patch.object(writer, "submit", queued.append)

    def built() -> AbstractContextManager:
        return mock.patch.object(ActivityTracker, "record", nothing)

    def off() -> AbstractContextManager:
        return mock.patch.object(decorators, "_record", nothing)

    variants = {
        "untracked": ("/plain/", nullcontext),
        "decorator": ("/plain-async/", off),
        "built": ("/plain-async/", built),
        "journaled": ("/plain-async/", journaled),
    }
    try:
        best = measure(variants, n, client_addresses(), BROWSERS)
    finally:
        journal.release(queued)
    order = list(variants)
    step = increments(best, order)
    labels = {
        "decorator": "the decorator with recording off (claim, context)",
        "built": "building the event (request data read and redacted)",
        "journaled": "journaling it (JSON, AES-GCM, write) and queueing it",
    }
    for name in order[1:]:
        emit(
            Figure(
                "costs",
                f"inside whole requests: {labels[name]}",
                step[name],
                "µs/request",
                best["untracked"],
                "the untracked request",
                note=f"CPU of the request thread, {n:,} requests through Django's WSGI handler "
                f"per round, least of {ROUNDS} alternating rounds",
            )
        )
    total = best["journaled"] - best["untracked"]
    emit(
        Figure(
            "costs",
            "inside whole requests: the request thread's share of an async_log=True view",
            total,
            "µs/request",
            best["untracked"],
            "the untracked request",
            note=f"{total / alone:.1f} x the same work timed on the view called alone "
            f"({alone:.0f} µs)",
        )
    )
