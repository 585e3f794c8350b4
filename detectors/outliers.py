"""IsolationForest outliers over the activity and the user's context (scikit-learn).

``tracking train`` replays stored history to build one feature row per event
(:func:`feature_row`), fits the forest and stores it signed (``tracking.detection.modelstore``). Scoring is
batched: the forest's ``decision_function`` once per batch (``detectors.forest`` computes it
without scikit-learn's per-call overhead). Each finding names the features that made the
event unusual, as their deviation (z-score) from the training distribution.

Without a trained model the detector is silent.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.base import Context, Detector, Finding, check_number
from detectors.forest import ForestScorer
from detectors.observation import Observation
from detectors.profile import UserProfile

FEATURE_NAMES: tuple[str, ...] = (
    "hour_rarity",
    "type_auth",
    "type_data",
    "type_money",
    "type_admin",
    "write_method",
    "status_class",
    "log_duration",
    "new_country",
    "new_asn",
    "new_device",
    "log_distance_km",
    "failures_1h",
    "requests_10m",
    "is_bot",
)

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def feature_row(event: Observation, features: dict[str, Any]) -> list[float]:
    """The numeric description of one event in its user's context (see ``FEATURE_NAMES``)."""
    t = event.type
    return [
        float(features.get("hour_rarity", 0.5)),
        1.0 if t == "AUTH" else 0.0,
        1.0 if t == "DATA" else 0.0,
        1.0 if t in ("PAYMENT", "ACCOUNT") else 0.0,
        1.0 if t == "ADMIN" else 0.0,
        1.0 if (event.method or "").upper() in _WRITE_METHODS else 0.0,
        # A failed login answered 200 (a form error) counts as the 4xx it is.
        4.0
        if event.failed and (event.status or 200) < 400
        else float((event.status or 200) // 100),
        math.log1p(max(0.0, event.duration or 0.0)),
        1.0 if features.get("new_country") else 0.0,
        1.0 if features.get("new_asn") else 0.0,
        1.0 if features.get("new_device") else 0.0,
        math.log1p(max(0.0, features.get("distance_km") or 0.0)),
        float(min(50, features.get("failures_1h") or 0)),
        float(min(100, features.get("requests_10m") or 0)),
        1.0 if event.is_bot else 0.0,
    ]


class IsolationForestDetector(Detector):
    name = "isolation_forest"
    tag = "outlier"
    batched = True
    trainable = True

    def __init__(
        self,
        n_estimators: int = 100,
        contamination: float | str = "auto",
        max_samples: int | str = "auto",
        random_state: int = 0,
        threshold: float = 0.1,
        scale: float = 0.15,
        max_score: float = 0.65,
        top_features: int = 3,
        model_name: str = "isolation_forest",
    ) -> None:
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.max_samples = max_samples
        self.random_state = random_state
        self.threshold = threshold
        self.scale = scale
        self.max_score = max_score
        self.top_features = top_features
        self.model_name = model_name

    def validate(self) -> None:
        check_number("n_estimators", self.n_estimators, low=1)
        if self.contamination != "auto":
            check_number("contamination", self.contamination, low=1e-6, high=0.5)
        if self.max_samples != "auto":
            check_number("max_samples", self.max_samples, low=1)
        check_number("threshold", self.threshold, low=0)
        check_number("scale", self.scale, low=1e-9)
        check_number("max_score", self.max_score, low=0, high=1)
        check_number("top_features", self.top_features, low=1)

    # --- learning ------------------------------------------------------------------
    def fit(self, X: Any = None, y: Any = None) -> IsolationForestDetector:
        import numpy as np
        from sklearn.ensemble import IsolationForest

        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected rows of {len(FEATURE_NAMES)} features, got shape {X.shape}")
        if len(X) < 2:
            raise ValueError("need at least 2 events to fit")
        model = IsolationForest(
            n_estimators=self.n_estimators,
            contamination=self.contamination,
            max_samples=self.max_samples,
            random_state=self.random_state,
        )
        model.fit(X)
        self.model_ = model
        self.mean_ = X.mean(axis=0).tolist()
        self.std_ = X.std(axis=0).tolist()
        self.n_samples_ = int(len(X))
        return self

    def state_name(self) -> str:
        return self.model_name

    def state_meta(self) -> dict[str, Any]:
        """JSON-safe companion of the fitted estimator (stored next to it)."""
        return {
            "features": list(FEATURE_NAMES),
            "mean": self.mean_,
            "std": self.std_,
            "n_samples": self.n_samples_,
        }

    def set_state(self, model: Any, meta: dict[str, Any]) -> IsolationForestDetector:
        """Install a stored model; refused if it was trained on another feature set."""
        if list(meta.get("features", [])) != list(FEATURE_NAMES):
            raise ValueError(
                "stored model was trained on a different feature set; run `tracking train`"
            )
        self.model_ = model
        self.mean_ = list(meta["mean"])
        self.std_ = list(meta["std"])
        self.n_samples_ = int(meta.get("n_samples", 0))
        return self

    def clear_state(self) -> None:
        for attr in ("model_", "mean_", "std_", "n_samples_", "scorer_"):
            self.__dict__.pop(attr, None)

    @property
    def fitted(self) -> bool:
        return getattr(self, "model_", None) is not None

    # --- scoring -------------------------------------------------------------------
    def prepare(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[float]:
        return feature_row(event, context.features)

    def score_prepared(self, items: list[tuple[Observation, Any]]) -> list[list[Finding]]:
        out: list[list[Finding]] = [[] for _ in items]
        if not items or not self.fitted:
            return out
        import numpy as np

        X = np.asarray([row for _, row in items], dtype=float)
        decision = self._scorer().decision_function(X)
        for i, df in enumerate(decision):
            if df >= -self.threshold:
                continue
            out[i].append(self._finding(X[i].tolist(), float(df)))
        return out

    def _scorer(self) -> Any:
        """The forest's ``decision_function`` without its per-call overhead
        (``detectors.forest``), made once per installed model; any other estimator is asked
        directly."""
        model = self.model_
        cached = self.__dict__.get("scorer_")
        if cached is not None and cached[0] is model:
            return cached[1]
        try:
            scorer: Any = ForestScorer(model)
        except (AttributeError, TypeError, ValueError):  # not a fitted IsolationForest
            scorer = model
        self.__dict__["scorer_"] = (model, scorer)
        return scorer

    def _finding(self, row: Any, df: float) -> Finding:
        z = []
        for j, name in enumerate(FEATURE_NAMES):
            std = self.std_[j]
            dev = (
                (row[j] - self.mean_[j]) / std
                if std > 1e-9
                else (0.0 if row[j] == self.mean_[j] else 10.0)
            )
            z.append((abs(float(dev)), name, float(row[j]), float(self.mean_[j]), float(dev)))
        z.sort(reverse=True)
        top = [t for t in z[: self.top_features] if t[0] > 0]
        score = self.max_score * min(1.0, -df / self.scale)
        desc = ", ".join(f"{name}={value:g} (usual {mean:.2g})" for _, name, value, mean, _ in top)
        severity = "medium" if score >= 0.5 else "low"
        return Finding(
            detector=self.name,
            tag=self.tag,
            score=score,
            severity=severity,
            reason=f"Unusual activity (anomaly {-df:.2f}): {desc}"
            if desc
            else f"Unusual activity (anomaly {-df:.2f})",
            evidence={
                "decision": round(df, 4),
                "features": {
                    name: {"value": value, "mean": round(mean, 4), "z": round(dev, 2)}
                    for _, name, value, mean, dev in top
                },
            },
        )
