"""``tracking train``: fit the IsolationForest detector on stored history and store the model.

History is replayed in timestamp order through fresh in-memory profiles, so every event's
feature row describes it in its user's context *at that time*, exactly as live scoring does.
Activities a reviewer confirmed as attacks are left out. The model is stored as a new signed
version (``tracking.detection.modelstore``); running detectors pick it up on their next batch.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, cast

from detectors.base import Context, Observation
from detectors.engine import Engine
from detectors.features import context_features
from detectors.outliers import IsolationForestDetector, feature_row
from detectors.profile import UserProfile
from tracking.dates import parse_iso_date, parse_iso_datetime
from tracking.detection import modelstore
from tracking.detection.config import configured_detectors
from tracking.detection.profiles import profile_key
from tracking.models import Activity, ReviewStatus

UTC = dt_timezone.utc

help = "Fit the IsolationForest outlier detector on stored activity and store a new model version."

COLUMNS = (
    "id",
    "outcome",
    "timestamp",
    "type",
    "user_id",
    "username",
    "session_id",
    "ip_address",
    "isp",
    "asn",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "accuracy_radius",
    "device",
    "os",
    "browser",
    "is_mobile",
    "is_bot",
    "user_agent",
    "endpoint",
    "method",
    "status",
    "duration",
    "flagged",
    "risk_score",
)


def parse_when(text: str) -> datetime:
    """``30d`` / ``12h`` / ``2w`` (ago), or a strict ISO date or date-time (``tracking.dates``,
    as every CLI option and API filter); naive values are UTC."""
    m = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text or "")
    if m:
        unit = {"d": "days", "h": "hours", "w": "weeks"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    value = parse_iso_datetime((text or "").strip())
    if value is None:
        day = parse_iso_date((text or "").strip())
        if day is None:
            raise ValueError(f"{text!r} is not a date, a timestamp or a span like 30d")
        value = datetime(day.year, day.month, day.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _contamination(text: str) -> float | str:
    if text == "auto":
        return text
    value = float(text)
    if not 0 < value <= 0.5:
        raise ValueError("contamination must be 'auto' or in (0, 0.5]")
    return value


def add_arguments(parser) -> None:
    parser.add_argument(
        "--since", help="train on activity from this time (ISO date/time or e.g. 30d)"
    )
    parser.add_argument("--until", help="train on activity before this time")
    parser.add_argument(
        "--contamination", help="expected share of outliers: 'auto' or 0 < x <= 0.5"
    )
    parser.add_argument("--n-estimators", type=int, default=None, help="number of trees")
    parser.add_argument(
        "--min-events", type=int, default=50, help="refuse to train on fewer events"
    )


def replay_rows(rows, detectors) -> list[list[float]]:
    """Feature rows for stored activities (dicts of COLUMNS, timestamp order)."""

    # The engine's own learning, so each row describes its event as live scoring saw it.
    engine = Engine(detectors)
    profiles: dict[str, UserProfile] = {}
    X: list[list[float]] = []
    for row in rows:
        obs = Observation(
            timestamp=row["timestamp"],
            type=row["type"] or "",
            id=str(row["id"]),
            user_key=profile_key(row["user_id"], row["username"]),
            **cast(
                dict[str, Any],
                {
                    k: (row[k] if row[k] is not None else "")
                    for k in (
                        "username",
                        "session_id",
                        "isp",
                        "country",
                        "region",
                        "city",
                        "device",
                        "os",
                    )
                },
            ),
            browser=row["browser"] or "",
            ip_address=row["ip_address"],
            asn=row["asn"],
            latitude=row["latitude"],
            longitude=row["longitude"],
            accuracy_radius=row["accuracy_radius"],
            is_mobile=bool(row["is_mobile"]),
            is_bot=bool(row["is_bot"]),
            user_agent=row["user_agent"] or "",
            endpoint=row["endpoint"] or "",
            method=(row["method"] or "").upper(),
            status=row["status"],
            outcome=row["outcome"] or "",
            duration=row["duration"],
        )
        profile = profiles.get(obs.user_key) if obs.user_key else None
        if profile is None and obs.user_key and not obs.failed:
            profile = profiles[obs.user_key] = UserProfile(key=obs.user_key)
        features = context_features(obs, profile)
        X.append(feature_row(obs, features))
        if profile is None:
            continue
        ctx = Context(now=obs.timestamp, population=None, features=features)
        engine.remember(
            obs, profile, ctx, flagged=bool(row["flagged"]), risk=row["risk_score"] or 0.0
        )
    return X


def handle(
    command,
    *,
    since: str | None = None,
    until: str | None = None,
    contamination: str | None = None,
    n_estimators: int | None = None,
    min_events: int = 50,
    **options: Any,
) -> int:
    try:
        start = parse_when(since) if since else None
        end = parse_when(until) if until else None
        contam = _contamination(contamination) if contamination else None
    except ValueError as exc:
        command.stderr.write(f"invalid option: {exc}")
        return 2
    if n_estimators is not None and n_estimators < 1:
        command.stderr.write("invalid option: --n-estimators must be positive")
        return 2
    try:
        detectors = configured_detectors()
    except ValueError as exc:
        command.stderr.write(f"TRACKING_DETECTORS is invalid: {exc}")
        return 2
    forest = next((d for d in detectors if isinstance(d, IsolationForestDetector)), None)
    if forest is None:
        forest = IsolationForestDetector()
        command.stdout.write(
            "note: IsolationForestDetector is not in TRACKING_DETECTORS; training its defaults"
        )
    if contam is not None:
        forest.set_params(contamination=contam)
    if n_estimators is not None:
        forest.set_params(n_estimators=n_estimators)

    qs = Activity.objects.exclude(review_status=ReviewStatus.CONFIRMED).order_by("timestamp", "id")
    if start:
        qs = qs.filter(timestamp__gte=start)
    if end:
        qs = qs.filter(timestamp__lt=end)
    plain = [d for d in detectors if not d.batched]
    X = replay_rows(qs.values(*COLUMNS).iterator(chunk_size=2000), plain)
    if len(X) < max(2, min_events):
        command.stderr.write(
            f"not enough activity to train: {len(X)} events (need {max(2, min_events)})"
        )
        return 1
    forest.fit(X)
    meta = {
        **forest.state_meta(),
        "params": {
            k: v for k, v in forest.get_params().items() if isinstance(v, int | float | str)
        },
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
    }
    row = modelstore.save_model(forest.model_name, forest.model_, meta)
    command.stdout.write(
        f"Trained {forest.model_name} v{row.version} on {len(X)} events "
        f"(contamination={forest.contamination}, trees={forest.n_estimators})."
    )
    return 0
