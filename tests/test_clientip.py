"""Client IP behind trusted proxies only; the raw peer and chain kept for forensics."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.request import Request

from tracking.capture.clientip import client_address, client_ip

rf = RequestFactory()


def req(remote="203.0.113.9", xff=None, real=None):
    extra = {"REMOTE_ADDR": remote}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    if real is not None:
        extra["HTTP_X_REAL_IP"] = real
    return rf.get("/", **extra)


def test_direct_client_spoofing_xff_is_ignored():
    r = req("81.2.69.10", xff="1.2.3.4")
    addr = client_address(r)
    assert addr.ip == "81.2.69.10"
    assert addr.remote_addr == "81.2.69.10"
    assert addr.forwarded_for == "1.2.3.4"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_trusted_proxy_right_most_untrusted():
    # The client forged "6.6.6.6"; the proxy appended the real peer 81.2.69.10.
    assert client_ip(req("10.0.0.2", xff="6.6.6.6, 81.2.69.10")) == "81.2.69.10"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8", "192.168.0.0/16"])
def test_chain_of_two_trusted_proxies():
    assert client_ip(req("10.0.0.2", xff="7.7.7.7, 81.2.69.10, 192.168.1.5")) == "81.2.69.10"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_untrusted_peer_with_trusted_setting_still_ignores_header():
    assert client_ip(req("81.2.69.10", xff="10.0.0.5, 1.2.3.4")) == "81.2.69.10"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_garbage_entries_stop_the_walk_at_the_hop_to_their_right():
    # Left of an invalid token everything is client-written: the peer is all we know.
    assert client_ip(req("10.0.0.2", xff="not-an-ip, , 81.2.69.10, zzz")) == "10.0.0.2"
    assert client_ip(req("10.0.0.2", xff="not-an-ip, , 81.2.69.10")) == "81.2.69.10"
    assert client_ip(req("10.0.0.2", xff="garbage")) == "10.0.0.2"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_x_real_ip_when_no_xff():
    assert client_ip(req("10.0.0.2", real="81.2.69.11")) == "81.2.69.11"
    assert (
        client_address(req("10.0.0.2", real="81.2.69.11")).forwarded_for == "X-Real-IP: 81.2.69.11"
    )


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_all_hops_trusted_takes_left_most():
    assert client_ip(req("10.0.0.2", xff="10.1.1.1, 10.2.2.2")) == "10.1.1.1"


def test_ipv6_and_mapped_ipv4_normalised():
    assert client_ip(req("2001:DB8:0:0::1")) == "2001:db8::1"
    assert client_ip(req("::ffff:81.2.69.10")) == "81.2.69.10"


@override_settings(TRACKING_TRUSTED_PROXIES=["::ffff:10.0.0.0/104", "fd00::/8"])
def test_ipv6_proxies():
    assert client_ip(req("::ffff:10.0.0.2", xff="81.2.69.10")) == "81.2.69.10"
    assert client_ip(req("fd00::1", xff="2001:db8::5, fd00::2")) == "2001:db8::5"


def test_garbage_remote_addr():
    addr = client_address(req("bogus"))
    assert addr.ip is None and addr.remote_addr is None


def test_chain_truncated_for_forensics():
    addr = client_address(req("81.2.69.10", xff=", ".join(["1.2.3.4"] * 200)))
    assert len(addr.forwarded_for) == 512


def test_remembered_answers_follow_the_trusted_proxies_setting():
    # The same peer and chain, answered from the cache, until the setting changes.
    r = req("10.0.0.2", xff="6.6.6.6, 81.2.69.10")
    assert client_ip(r) == client_ip(r) == "10.0.0.2"
    with override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"]):
        assert client_ip(r) == client_ip(r) == "81.2.69.10"
    assert client_ip(r) == "10.0.0.2"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_long_chains_are_resolved_alike_without_the_cache():
    from tracking.capture import clientip

    hops = ", ".join(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(40))
    chain = f"6.6.6.6, 81.2.69.10, {hops}"
    assert len(chain) > clientip.MEMO_HEADER_LENGTH
    before = clientip._memo_address.cache_info().currsize
    assert client_ip(req("10.0.0.2", xff=chain)) == "81.2.69.10"
    assert clientip._memo_address.cache_info().currsize == before


def test_drf_request_supported():
    assert client_ip(Request(req("81.2.69.10", xff="1.2.3.4"))) == "81.2.69.10"


@pytest.mark.django_db
def test_invalid_trusted_proxy_is_a_system_check():
    from tracking.checks import check_recording

    with override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8", "nonsense"]):
        errors = check_recording()
    assert [e.id for e in errors] == ["tracking.E010"]
    assert "nonsense" in errors[0].msg


@pytest.mark.parametrize(
    ("overrides", "ids"),
    [
        ({"TRACKING_ASYNC_HANDOFF": "kafka"}, ["tracking.E011"]),
        ({"TRACKING_QUEUE_SIZE": 0}, ["tracking.E013"]),
        ({"TRACKING_GEO_HTTP_URL": "https://geo.example/json"}, ["tracking.E015"]),
        ({"TRACKING_SPOOL_DIR": None}, ["tracking.W010"]),
        ({"GEOIP_PATH": "/nonexistent-geoip"}, ["tracking.W012"]),
        ({}, []),
    ],
)
def test_recording_checks(overrides, ids):
    from tracking.checks import check_recording

    with override_settings(**overrides):
        assert [e.id for e in check_recording()] == ids
