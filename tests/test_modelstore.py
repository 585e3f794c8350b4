"""Signed, versioned model storage: round trip, and refusal of anything modified."""

from __future__ import annotations

import random

import pytest

from detectors.outliers import FEATURE_NAMES, IsolationForestDetector
from tracking.detection import modelstore
from tracking.models import DetectorModel


def fitted() -> IsolationForestDetector:
    rng = random.Random(3)
    X = [[rng.random() for _ in FEATURE_NAMES] for _ in range(200)]
    return IsolationForestDetector(n_estimators=10).fit(X)


@pytest.mark.django_db
def test_round_trip_is_versioned_and_not_pickle():
    det = fitted()
    first = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    second = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    assert (first.version, second.version) == (1, 2)
    assert modelstore.latest_version("isolation_forest") == 2
    raw = bytes(first.data)
    assert raw[:2] == b"PK"  # a skops zip archive, not a pickle stream
    assert first.mac.startswith(first.key_id + ":")
    model, meta, version = modelstore.load_model("isolation_forest")
    assert version == 2 and meta["features"] == list(FEATURE_NAMES)
    X = [[0.5] * len(FEATURE_NAMES)]
    assert model.decision_function(X)[0] == pytest.approx(det.model_.decision_function(X)[0])
    assert modelstore.load_model("isolation_forest", version=1)[2] == 1


@pytest.mark.django_db
def test_missing_model():
    with pytest.raises(DetectorModel.DoesNotExist):
        modelstore.load_model("nothing")


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["data", "meta", "mac", "version"])
def test_tampered_model_is_refused(what):
    det = fitted()
    row = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    if what == "data":
        data = bytearray(row.data)
        data[len(data) // 2] ^= 0xFF
        DetectorModel.objects.filter(pk=row.pk).update(data=bytes(data))
    elif what == "meta":
        DetectorModel.objects.filter(pk=row.pk).update(
            meta={**row.meta, "mean": [0.0] * len(FEATURE_NAMES)}
        )
    elif what == "mac":
        DetectorModel.objects.filter(pk=row.pk).update(mac=row.key_id + ":" + "0" * 64)
    else:
        DetectorModel.objects.filter(pk=row.pk).update(version=7)
    with pytest.raises(modelstore.ModelRefused):
        modelstore.load_model("isolation_forest")


@pytest.mark.django_db
def test_a_replaced_file_with_a_recomputed_digest_is_still_refused():
    import hashlib

    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    det = fitted()
    row = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    other = sio.dumps(LinearRegression())
    DetectorModel.objects.filter(pk=row.pk).update(
        data=other, digest=hashlib.sha256(other).hexdigest()
    )
    with pytest.raises(modelstore.ModelRefused, match="signature"):
        modelstore.load_model("isolation_forest")


@pytest.mark.django_db
def test_detection_ignores_a_tampered_model(caplog):
    from tracking.detection.config import pipeline
    from tracking.detection.modelstore import refresh_models

    det = fitted()
    row = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    DetectorModel.objects.filter(pk=row.pk).update(mac=row.key_id + ":" + "1" * 64)
    pipe = pipeline()
    pipe.versions.clear()
    with caplog.at_level("ERROR", logger="tracking.detection"):
        refresh_models(pipe)
    forest = next(d for d in pipe.detectors if isinstance(d, IsolationForestDetector))
    assert not forest.fitted
    assert "signature does not verify" in caplog.text
    # a good new version is picked up on the next batch
    modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    refresh_models(pipe)
    assert forest.fitted


@pytest.mark.django_db
def test_latest_version_is_trusted_for_the_interval_of_an_injectable_timer(
    django_assert_num_queries,
):
    """Another process's training is seen once ``interval`` seconds of ``timer`` passed."""
    clock = [1000.0]
    versions = modelstore.LatestVersions()
    versions.timer = lambda: clock[0]
    assert versions.get("isolation_forest") is None
    det = fitted()
    # Stored as another process would: this one's cache is not told.
    DetectorModel.objects.create(
        name="isolation_forest", version=1, data=b"x", digest="0", key_id="k", mac="k:0", meta={}
    )
    clock[0] += versions.interval - 0.5
    with django_assert_num_queries(0):
        assert versions.get("isolation_forest") is None
    clock[0] += 1.0
    assert versions.get("isolation_forest") == 1
    # save_model in this process clears the process-wide cache at once.
    modelstore.latest_versions.get("isolation_forest")
    row = modelstore.save_model("isolation_forest", det.model_, det.state_meta())
    with django_assert_num_queries(1):
        assert modelstore.latest_versions.get("isolation_forest") == row.version


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        {"f": eval},
        {"f": exec},
        {"f": getattr},
        {"f": __import__("numpy").load},
        {"f": __import__("numpy").frombuffer},
        {"f": __import__("sklearn.base", fromlist=["clone"]).clone},
    ],
    ids=["eval", "exec", "getattr", "numpy.load", "numpy.frombuffer", "sklearn.base.clone"],
)
def test_a_validly_signed_model_holding_a_callable_is_refused(payload):
    # The MAC is the first line of defence; this checks the second: the type allow-list.
    modelstore.save_model("isolation_forest", payload, {})
    with pytest.raises(modelstore.ModelRefused, match="refuses to load types"):
        modelstore.load_model("isolation_forest")


def test_the_allow_list_is_exact_names_without_callables():
    assert all(not name.endswith(".") for name in modelstore.TRUSTED_TYPES)
    assert not any(name.startswith("builtins.") for name in modelstore.TRUSTED_TYPES)
