"""Risk-based authentication score after Freeman et al., "Who Are You? A Statistical Approach to
Measuring User Authenticity" (NDSS 2016), in the form evaluated by Wiefling et al. (2019-2022).

For each feature k of a login (IP prefix, ASN, country, user agent, browser, OS, device):

    ratio_k = p(x_k | population) / p(x_k | user history)

    p(x | population) = (C(x) + 1) / (N + D + 1)                  Laplace smoothing (D distinct values)
    p(x | user)       = (c_u(x) + lam * p(x | population)) / (n_u + lam)
                                                                   backoff to the population for
                                                                   values the user never used

The ratios are multiplied (summed in log space, each clipped to +/- ``clip``) and the total is
mapped to [0, 1] with a logistic ``1 / (1 + exp(-(log R - center) / scale))``. A value the user
always uses gives a ratio well below 1; one never seen gives ``(n_u + lam) / lam``, so the score
grows with how much history contradicts the login. Evidence lists every feature's contribution.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile, ip_prefix, ua_key

FEATURES: tuple[str, ...] = ("ip", "asn", "country", "ua", "browser", "os", "device")


def feature_values(obs: Observation) -> dict[str, str]:
    return {
        "ip": ip_prefix(obs.ip_address),
        "asn": "" if obs.asn is None else str(obs.asn),
        "country": obs.country or "",
        "ua": ua_key(obs.user_agent),
        "browser": obs.browser or "",
        "os": obs.os or "",
        "device": obs.device_key,
    }


class FreemanRiskScore(Detector):
    name = "risk_score"
    tag = "risky_login"

    def __init__(
        self,
        types: list[str] | tuple[str, ...] = ("AUTH",),
        features: list[str] | tuple[str, ...] = FEATURES,
        smoothing: float = 1.0,
        center: float = 18.0,
        scale: float = 2.5,
        clip: float = 6.0,
        min_history: int = 5,
        min_score: float = 0.3,
    ) -> None:
        self.types = types
        self.features = features
        self.smoothing = smoothing
        self.center = center
        self.scale = scale
        self.clip = clip
        self.min_history = min_history
        self.min_score = min_score

    def validate(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(
                f"features: unknown feature(s) {unknown}; choose from {list(FEATURES)}"
            )
        check_number("smoothing", self.smoothing, low=1e-9)
        check_number("scale", self.scale, low=1e-9)
        check_number("center", self.center)
        check_number("clip", self.clip, low=0)
        check_number("min_history", self.min_history, low=0)
        check_number("min_score", self.min_score, low=0, high=1)

    def applies(self, event: Observation) -> bool:
        # A failed attempt authenticates nobody: it is not a login whose authenticity can be
        # scored (the stuffing, spraying and brute-force rules judge failures).
        return (not self.types or event.type in self.types) and not event.failed

    def population_keys(self, event: Observation) -> list[tuple[str, str]]:
        """The (feature, value) pairs whose population counts scoring this event needs."""
        if not self.applies(event):
            return []
        values = feature_values(event)
        return [(f, values[f]) for f in self.features]

    def contributions(
        self, event: Observation, profile: UserProfile, context: Context
    ) -> dict[str, Any]:
        pop = context.population
        values = feature_values(event)
        lam = self.smoothing
        out: dict[str, Any] = {}
        for feature in self.features:
            value = values[feature]
            if not value:
                continue
            g_count = pop.count(feature, value) if pop else 0
            g_total = pop.total(feature) if pop else 0
            g_distinct = pop.distinct(feature) if pop else 0
            p_global = (g_count + 1) / (g_total + g_distinct + 1)
            u_count = profile.count(feature, value)
            u_total = profile.total(feature)
            p_user = (u_count + lam * p_global) / (u_total + lam)
            log_ratio = max(-self.clip, min(self.clip, math.log(p_global / p_user)))
            out[feature] = {
                "value": value if feature != "ua" else event.user_agent[:120],
                "user_count": u_count,
                "user_total": u_total,
                "global_count": g_count,
                "global_total": g_total,
                "log_ratio": round(log_ratio, 3),
            }
        return out

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if profile is None or not self.applies(event) or profile.events < self.min_history:
            return []
        parts = self.contributions(event, profile, context)
        if not parts:
            return []
        log_r = sum(p["log_ratio"] for p in parts.values())
        z = (log_r - self.center) / self.scale
        score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        if score < self.min_score:
            return []
        drivers = sorted(parts, key=lambda f: parts[f]["log_ratio"], reverse=True)
        top = [f for f in drivers if parts[f]["log_ratio"] > 0][:3]
        reason = f"Login risk {score:.2f} (Freeman): " + (
            ", ".join(f"unusual {f}" for f in top) if top else "no unusual feature"
        )
        severity = "high" if score >= 0.9 else "medium" if score >= 0.6 else "low"
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=score,
                severity=severity,
                reason=reason,
                evidence={
                    "log_risk": round(log_r, 3),
                    "features": parts,
                    "drivers": top,
                    "center": self.center,
                    "scale": self.scale,
                },
            )
        ]

    def update(self, event: Observation, profile: UserProfile, context: Context) -> None:
        if context.population is None or not self.applies(event):
            return
        for feature, value in feature_values(event).items():
            if feature in self.features:
                context.population.add(feature, value)
