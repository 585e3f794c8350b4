"""detectors.forest: a fitted IsolationForest's decision_function without scikit-learn's
per-call overhead, equal to the public method value for value."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detectors.forest import ForestScorer, average_path_length
from detectors.outliers import FEATURE_NAMES, IsolationForestDetector, feature_row
from tests.detection_helpers import obs

WIDTH = len(FEATURE_NAMES)


def data(seed: int, n: int = 1500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, WIDTH))
    X[:, 1] = rng.integers(0, 2, size=n)  # flags and small counts, as the real rows have
    X[:, 12] = rng.integers(0, 5, size=n)
    return X


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"max_features": 0.5},
        {"max_features": 3, "n_estimators": 7},
        {"max_samples": 9},
        {"max_samples": 1},  # single-point trees: sklearn's special case
        {"contamination": 0.05},
        {"bootstrap": True},
    ],
)
def test_scores_equal_scikit_learns_decision_function(params):
    X = data(1)
    model = IsolationForest(random_state=0, **params).fit(X)
    rng = np.random.default_rng(2)
    batch = np.vstack([rng.normal(size=(300, WIDTH)) * 4, X[:50], X[:1]])
    fast = ForestScorer(model).decision_function(batch)
    assert np.array_equal(fast, model.decision_function(batch))
    one = ForestScorer(model).decision_function(batch[:1])
    assert np.array_equal(one, model.decision_function(batch[:1]))


def test_average_path_length_is_the_papers_c_of_n():
    got = average_path_length([0, 1, 2, 3, 256])
    assert got[:3].tolist() == [0.0, 0.0, 1.0]
    assert got[3] == pytest.approx(2 * (np.log(2) + np.euler_gamma) - 4 / 3)
    assert got[4] == pytest.approx(2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256)


def test_rows_of_another_width_are_refused():
    model = IsolationForest(n_estimators=5, random_state=0).fit(data(3, 200))
    with pytest.raises(ValueError, match=f"expected rows of {WIDTH} features"):
        ForestScorer(model).decision_function(np.zeros((2, WIDTH - 1)))


def test_detector_findings_are_those_of_the_public_method():
    X = data(4)
    det = IsolationForestDetector(threshold=0.02, n_estimators=40).fit(X.tolist())
    rows = np.vstack([np.random.default_rng(5).normal(size=(200, WIDTH)) * 3, X[:20]])
    items = [(obs("london"), row.tolist()) for row in rows]
    found = det.score_prepared(items)
    expected = det.model_.decision_function(rows)
    assert any(found) and not all(found)
    for result, df in zip(found, expected, strict=True):
        assert bool(result) == (df < -det.threshold)
        if result:
            assert result[0].evidence["decision"] == round(float(df), 4)


def test_a_newly_installed_model_is_scored_with_its_own_trees():
    det = IsolationForestDetector(threshold=0.0, n_estimators=20).fit(data(6).tolist())
    o = obs("lagos", type="DATA", duration=9000)
    row = feature_row(o, {"hour_rarity": 1.0, "distance_km": 5000, "failures_1h": 9})
    before = float(det.model_.decision_function(np.asarray([row]))[0])
    [first] = det.score_prepared([(o, row)])
    other = IsolationForest(n_estimators=20, random_state=9).fit(data(7) * 0.1)
    det.set_state(other, det.state_meta())
    after = float(other.decision_function(np.asarray([row]))[0])
    [second] = det.score_prepared([(o, row)])
    assert before < 0 and after < 0 and round(before, 4) != round(after, 4)
    assert first[0].evidence["decision"] == round(before, 4)
    assert second[0].evidence["decision"] == round(after, 4)
