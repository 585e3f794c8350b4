"""The detection engine's view of a stored activity: ``Activity`` → ``Observation``."""

from __future__ import annotations

from typing import Any

from detectors.observation import Observation
from tracking.detection.profiles import profile_key
from tracking.models import Activity


def observation(act: Activity, *, with_params: bool = True) -> Observation:
    params: Any = {}
    if with_params:
        try:
            params = act.params if isinstance(act.params, dict) else {}
        except Exception:  # an undecryptable row still gets judged on the rest
            params = {}
    return Observation(
        timestamp=act.timestamp,
        type=act.type or "",
        id=str(act.id),
        user_key=profile_key(act.user_id, act.username),
        username=act.username or "",
        session_id=act.session_id or "",
        ip_address=act.ip_address,
        isp=act.isp or "",
        asn=act.asn,
        country=act.country or "",
        region=act.region or "",
        city=act.city or "",
        latitude=act.latitude,
        longitude=act.longitude,
        accuracy_radius=act.accuracy_radius,
        device=act.device or "",
        os=act.os or "",
        browser=act.browser or "",
        is_mobile=bool(act.is_mobile),
        is_bot=bool(act.is_bot),
        user_agent=act.user_agent or "",
        endpoint=act.endpoint or "",
        method=(act.method or "").upper(),
        status=act.status,
        outcome=act.outcome or "",
        duration=act.duration,
        params=params,
    )
