"""Versioned, signed storage of trained detector models in ``DetectorModel``.

The estimator is serialised with skops (never pickle); the row's MAC
(``tracking.integrity.macs.sign(..., "model")``) covers the name, version, the SHA-256 of the bytes and
the JSON metadata. Loading checks the digest and the MAC *before* deserialising and then lets
skops build only the types of ``TRUSTED_TYPES`` beyond its own safe defaults: a modified
file is refused, not executed.

``refresh_models`` installs the latest verified model into each trainable detector of the
pipeline; the latest version number is read at most every ``LatestVersions.interval`` seconds
(another process's ``tracking train`` is picked up within that time, one in this process at
once: ``save_model`` forgets the cached numbers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from tracking.conf import on_reload
from tracking.detection.config import Pipeline
from tracking.integrity import macs as integrity
from tracking.models import DetectorModel

logger = logging.getLogger("tracking.detection")

PURPOSE = "model"
# The types a stored model may hold beyond skops' own safe defaults: the estimator, its trees
# and their arrays. Exact names, never a module prefix: a prefix such as "builtins." or
# "numpy." admits callables (``builtins.eval``, ``numpy.load``). No function is listed.
TRUSTED_TYPES = frozenset(
    {
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.intp",
    }
)


class ModelRefused(Exception):
    """A stored model failed verification (tampered, unknown key, or unsafe content)."""


def _message(name: str, version: int, digest: str, meta: dict[str, Any]) -> bytes:
    doc = {"name": name, "version": version, "digest": digest, "meta": meta}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def save_model(name: str, estimator: Any, meta: dict[str, Any] | None = None) -> DetectorModel:
    """Store ``estimator`` as the next version of ``name``; returns the new row."""
    import skops.io as sio

    meta = json.loads(json.dumps(meta or {}, default=str))
    data = sio.dumps(estimator)
    digest = hashlib.sha256(data).hexdigest()
    for _ in range(3):
        version = (
            DetectorModel.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0
        ) + 1
        mac = integrity.sign(_message(name, version, digest, meta), PURPOSE)
        try:
            with transaction.atomic():
                row = DetectorModel.objects.create(
                    name=name,
                    version=version,
                    data=data,
                    digest=digest,
                    key_id=mac.partition(":")[0],
                    mac=mac,
                    meta=meta,
                )
        except IntegrityError:  # another trainer took this version number
            continue
        forget_model_versions()  # this process uses the new model from its next batch
        return row
    raise RuntimeError(f"could not allocate a version for model {name!r}")


def latest_version(name: str) -> int | None:
    return DetectorModel.objects.filter(name=name).aggregate(v=Max("version"))["v"]


def verify(row: DetectorModel) -> bytes:
    """The model bytes after checking digest and MAC; raises ModelRefused."""
    data = bytes(row.data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != row.digest:
        raise ModelRefused(f"model {row.name} v{row.version}: content does not match its digest")
    if not integrity.check(
        _message(row.name, row.version, row.digest, row.meta or {}), PURPOSE, row.mac
    ):
        raise ModelRefused(f"model {row.name} v{row.version}: signature does not verify")
    return data


def load_model(name: str, version: int | None = None) -> tuple[Any, dict[str, Any], int]:
    """(estimator, meta, version) of ``name`` (latest by default); raises ModelRefused or
    DetectorModel.DoesNotExist."""
    import skops.io as sio

    qs = DetectorModel.objects.filter(name=name)
    row = qs.get(version=version) if version is not None else qs.order_by("-version").first()
    if row is None:
        raise DetectorModel.DoesNotExist(f"no stored model {name!r}")
    data = verify(row)
    untrusted = sio.get_untrusted_types(data=data)
    unsafe = [t for t in untrusted if t not in TRUSTED_TYPES]
    if unsafe:
        raise ModelRefused(f"model {name} v{row.version}: refuses to load types {unsafe}")
    try:
        estimator = sio.loads(data, trusted=untrusted)
    except Exception as exc:  # a corrupt file is refused, whatever skops says
        raise ModelRefused(f"model {name} v{row.version}: cannot be read ({exc})") from exc
    return estimator, dict(row.meta or {}), row.version


# --- installing the latest model ---------------------------------------------------------
class LatestVersions:
    """The latest stored version of each model, trusted for ``interval`` seconds.

    Reading it is a query per batch (about 7 ms of a synchronous one-event write), so a
    process re-reads it at most every ``interval`` seconds of ``timer`` (a monotonic clock;
    tests replace it).
    """

    timer: Callable[[], float] = time.monotonic
    interval = 5.0

    def __init__(self) -> None:
        self.read_at: dict[str, tuple[float, int | None]] = {}

    def get(self, name: str) -> int | None:
        now = self.timer()
        cached = self.read_at.get(name)
        if cached is not None and now - cached[0] < self.interval:
            return cached[1]
        version = latest_version(name)
        self.read_at[name] = (now, version)
        return version

    def clear(self) -> None:
        self.read_at.clear()


latest_versions = LatestVersions()


def forget_model_versions() -> None:
    """Make the next batch read the latest model versions from the database."""
    latest_versions.clear()


on_reload(forget_model_versions)


def refresh_models(pipe: Pipeline) -> None:
    """Install the latest stored model of each trainable detector (verified, or none)."""
    for det in pipe.detectors:
        if not det.trainable:
            continue
        name = det.state_name()
        version = latest_versions.get(name)
        if pipe.versions.get(det.name, -1) == version:
            continue
        pipe.versions[det.name] = version
        if version is None:
            det.clear_state()
            continue
        try:
            model, meta, version = load_model(name, version)
            det.set_state(model, meta)
        except Exception as exc:  # a refused model keeps the detector silent
            det.clear_state()
            logger.error("detector %s: stored model not used: %s", det.name, exc)
