"""IsolationForest: silent until trained, one decision_function per batch, explained."""

from __future__ import annotations

import random

import pytest

from detectors.base import Context
from detectors.outliers import FEATURE_NAMES, IsolationForestDetector, feature_row
from tests.detection_helpers import obs


def normal_rows(n: int = 400, seed: int = 1) -> list[list[float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        o = obs(
            "london",
            type=rng.choice(["AUTH", "API", "API", "OTHER"]),
            duration=rng.uniform(30, 200),
        )
        rows.append(
            feature_row(
                o,
                {
                    "hour_rarity": rng.uniform(0, 0.3),
                    "distance_km": rng.uniform(0, 20),
                    "requests_10m": rng.randint(0, 4),
                },
            )
        )
    return rows


def odd_event():
    o = obs("lagos", type="DATA", duration=9000, method="GET")
    features = {
        "hour_rarity": 1.0,
        "new_country": True,
        "new_asn": True,
        "new_device": True,
        "distance_km": 5000,
        "failures_1h": 6,
        "requests_10m": 60,
    }
    return o, features


def test_feature_row_matches_feature_names():
    o, features = odd_event()
    row = feature_row(o, features)
    assert len(row) == len(FEATURE_NAMES)
    named = dict(zip(FEATURE_NAMES, row, strict=True))
    assert named["new_country"] == 1.0 and named["type_data"] == 1.0 and named["failures_1h"] == 6


def test_untrained_detector_is_silent():
    det = IsolationForestDetector()
    o, features = odd_event()
    assert det.score(o, None, Context(now=o.timestamp, features=features)) == []


def test_trained_detector_flags_the_outlier_and_names_its_features():
    det = IsolationForestDetector(n_estimators=50, threshold=0.05).fit(normal_rows())
    assert det.fitted and det.n_samples_ == 400 and len(det.mean_) == len(FEATURE_NAMES)
    o, features = odd_event()
    (f,) = det.score(o, None, Context(now=o.timestamp, features=features))
    assert f.detector == "isolation_forest" and f.tag == "outlier"
    assert 0 < f.score <= det.max_score
    assert set(f.evidence["features"]) <= set(FEATURE_NAMES) and len(f.evidence["features"]) == 3
    top = next(iter(f.evidence["features"]))
    assert top.split("=")[0] in f.reason
    # a usual event is not an outlier
    usual = obs("london", type="API", duration=80)
    typical = {"hour_rarity": 0.15, "distance_km": 10, "requests_10m": 2}
    assert det.score(usual, None, Context(now=usual.timestamp, features=typical)) == []


class PublicOnly:
    """A fitted forest seen only through its public scoring method."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def decision_function(self, X):
        self.calls.append(len(X))
        return self.model.decision_function(X)


def test_scoring_is_one_public_decision_function_call_per_batch():
    det = IsolationForestDetector(n_estimators=20, threshold=0.05).fit(normal_rows())
    public = PublicOnly(det.model_)
    det.set_state(public, det.state_meta())
    o, features = odd_event()
    items = [(o, feature_row(o, features))] + [
        (obs("london"), row) for row in normal_rows(50, seed=2)
    ]
    results = det.score_prepared(items)
    assert public.calls == [51]
    assert len(results) == 51 and results[0]


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_findings_follow_scikit_learns_decision_function(max_features):
    """Scoring reads nothing of the forest but ``decision_function``: its findings are those
    of that public method's values, event for event."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(3)
    X = rng.normal(size=(800, len(FEATURE_NAMES)))
    model = IsolationForest(n_estimators=30, max_features=max_features, random_state=0).fit(X)
    det = IsolationForestDetector(threshold=0.02)
    det.set_state(
        PublicOnly(model),
        {
            "features": list(FEATURE_NAMES),
            "mean": X.mean(axis=0).tolist(),
            "std": X.std(axis=0).tolist(),
        },
    )
    T = np.vstack([rng.normal(size=(300, len(FEATURE_NAMES))) * 3, X[:5]])
    o = obs("london")
    results = det.score_prepared([(o, row.tolist()) for row in T])
    expected = model.decision_function(T)
    assert any(results) and not all(results)
    for found, df in zip(results, expected, strict=True):
        if df >= -det.threshold:
            assert found == []
        else:
            assert found[0].evidence["decision"] == round(float(df), 4)


@pytest.mark.parametrize("module", ["detectors.outliers", "detectors.forest"])
def test_outliers_use_no_private_scikit_learn_names(module):
    import ast
    import importlib
    from pathlib import Path

    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    # Private names of anything but the detector itself (the fitted forest, sklearn modules).
    private_attrs = [
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
        and not (isinstance(n.value, ast.Name) and n.value.id == "self")
    ]
    private_imports = [
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and "._" in n.module
    ]
    assert private_attrs == [] and private_imports == []


def test_state_round_trip_and_feature_set_check():
    det = IsolationForestDetector(n_estimators=10).fit(normal_rows(100))
    other = IsolationForestDetector().set_state(det.model_, det.state_meta())
    assert other.fitted and other.mean_ == det.mean_
    with pytest.raises(ValueError, match="different feature set"):
        IsolationForestDetector().set_state(det.model_, {**det.state_meta(), "features": ["x"]})
    other.clear_state()
    assert not other.fitted


def test_fit_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="features"):
        IsolationForestDetector().fit([[1.0, 2.0]])


@pytest.mark.parametrize("params", [{"contamination": 0.9}, {"n_estimators": 0}, {"max_score": 2}])
def test_invalid_parameters(params):
    with pytest.raises(ValueError):
        IsolationForestDetector(**params).validate()
