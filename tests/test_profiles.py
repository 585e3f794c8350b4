"""Per-user profile documents and their store (one query to load, one upsert to save)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detectors.profile import MAX_VALUES, UserProfile, ip_prefix
from tests.detection_helpers import PHONE, obs
from tracking.detection import profiles as store
from tracking.models import Counter, Profile


def test_profile_key():
    assert store.profile_key(7, "alice") == "u:7"
    assert store.profile_key(None, "alice") == "n:alice"
    assert store.profile_key(None, "") is None


def test_learn_note_forget_and_label():
    p = UserProfile(key="n:alice")
    home = obs("london")
    p.note(home)
    p.learn(home)
    assert p.events == 1 and p.count("asn", "64600") == 1 and p.total("asn") == 1
    assert p.count("ip", "81.2.69.0/24") == 1 and p.hours[home.timestamp.hour] == 1
    failed = obs("london", status=401, minutes=1)
    p.note(failed)
    assert p.recent("fail", failed.epoch, 60) == 1 and p.recent("req", failed.epoch, 600) == 2
    odd = obs("berlin", asn=64620, device=PHONE, minutes=5)
    p.learn(odd)
    p.set_location(odd)
    assert p.known("asn", "64620", odd.epoch)
    p.forget(odd)
    assert not p.known("asn", "64620", odd.epoch) and p.location is None
    assert p.known("asn", "64600", odd.epoch)  # what was known before stays
    p.label("confirmed", "abc")
    p.label("confirmed", "abc")
    assert p.data["labels"]["confirmed"] == ["abc"]


def test_value_maps_are_bounded():
    p = UserProfile()
    for i in range(MAX_VALUES + 10):
        p.learn(obs("london", ip=f"10.{i}.0.1", minutes=i))
    assert len(p.values("ip")) == MAX_VALUES
    assert p.total("ip") == MAX_VALUES  # evicted values leave the totals too
    assert "10.0.0.0/24" not in p.values("ip")  # least recently seen went first


def test_ip_prefix():
    assert ip_prefix("81.2.69.77") == "81.2.69.0/24"
    assert ip_prefix("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert ip_prefix(None) == ""


@pytest.mark.django_db
def test_store_round_trip_and_upsert():
    a, b = UserProfile(key="n:a"), UserProfile(key="u:1")
    for p in (a, b):
        o = obs("london")
        p.note(o)
        p.learn(o)
    assert store.save_profiles([a, b]) == 2
    assert store.save_profiles([a, b]) == 0  # nothing changed since
    loaded = store.load_profiles(["n:a", "u:1", "n:missing"])
    assert set(loaded) == {"n:a", "u:1"}
    later = obs("london", minutes=60 * 24)
    loaded["n:a"].note(later)
    loaded["n:a"].learn(later)
    store.save_profiles(loaded.values())
    row = Profile.objects.get(key="n:a")
    assert row.events == 2 and row.last_seen - row.first_seen == timedelta(days=1)
    assert Profile.objects.count() == 2


@pytest.mark.django_db
def test_counters_upsert_absolute_values():
    store.save_counters("risk", {"asn:1": 3, "asn:*": 3})
    store.save_counters("risk", {"asn:1": 5})
    assert store.load_counters("risk", ["asn:1", "asn:*", "asn:2"]) == {"asn:1": 5, "asn:*": 3}
    assert Counter.objects.count() == 2


@pytest.mark.django_db
def test_load_profiles_reads_every_chunk():
    many = [UserProfile(key=f"n:user{i}") for i in range(store.CHUNK + 3)]
    for p in many:
        o = obs("london")
        p.note(o)
        p.learn(o)
    assert store.save_profiles(many) == len(many)
    loaded = store.load_profiles([p.key for p in many] + ["n:nobody", "", None])
    assert set(loaded) == {p.key for p in many}
    assert all(loaded[p.key].data == p.data for p in many)


@pytest.mark.django_db
def test_load_counters_reads_every_chunk_of_its_namespace_only():
    """More keys than one statement takes (SQLite: 998 beside the namespace), and the same
    keys in another namespace, which are not read."""
    keys = [f"hour:{i}" for i in range(2 * store.COUNTER_CHUNK + 7)]
    store.save_counters("risk", {k: i + 1 for i, k in enumerate(keys) if i % 3})
    store.save_counters("other", {k: 99 for k in keys})
    loaded = store.load_counters("risk", [*keys, *keys[:10], "hour:none"])
    assert loaded == {k: i + 1 for i, k in enumerate(keys) if i % 3}
    assert all(isinstance(v, int) for v in loaded.values())
    assert store.load_counters("risk", []) == {}
    # a hostile key is a bound value, never SQL
    store.save_counters("risk", {"ua:'); DROP TABLE tracking_counter; --": 4})
    assert store.load_counters("risk", ["ua:'); DROP TABLE tracking_counter; --"]) == {
        "ua:'); DROP TABLE tracking_counter; --": 4
    }
