"""The trusted-proxy rule over X-Forwarded-For: split on commas (quotes mean nothing), walk
from the right past trusted hops, stop at the first untrusted one; an invalid token means
the hop to its right. Property tests over generated chains, and the review's reproduction
(a quoted forged hop choosing the recorded address and a fresh throttle bucket)."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracking.capture.clientip import client_address, client_ip, parse_ip

rf = RequestFactory()
PROXIES = ["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]
TRUSTED_NETS = [ipaddress.ip_network(n) for n in PROXIES]


def req(remote: str, xff: str | None = None, real: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    if real is not None:
        extra["HTTP_X_REAL_IP"] = real
    return rf.get("/", **extra)


# --- the review's reproduction and its variants -----------------------------------------


@override_settings(TRACKING_TRUSTED_PROXIES=["127.0.0.1/32"])
@pytest.mark.parametrize(
    "xff",
    [
        '203.0.113.77, ", 198.51.100.8',  # the reported chain: an unclosed quote
        '203.0.113.77 ", 198.51.100.8',
        '"203.0.113.77, 198.51.100.8',
        '203.0.113.77, "x", 198.51.100.8',
        '203.0.113.77, \\", 198.51.100.8',
        'for="203.0.113.77, 198.51.100.8',
    ],
)
def test_quotes_do_not_swallow_the_hop_the_proxy_appended(xff):
    assert client_ip(req("127.0.0.1", xff)) == "198.51.100.8"


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8", "fd00::/8"])
@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        # IPv6 chains, ports and brackets
        ('2001:db8::77, ", 2001:db8::8', "2001:db8::8"),
        ('2001:db8::77, ", [2001:db8::8]:443, fd00::1', "2001:db8::8"),
        ("[2001:db8::9], fd00::2", "2001:db8::9"),
        ("203.0.113.1, 198.51.100.8:8080, 10.0.0.7:3128", "198.51.100.8"),
        ("203.0.113.1, ::ffff:198.51.100.8, 10.0.0.7", "198.51.100.8"),
        # the invalid token stops the walk: the hop to its right, never further left
        ("198.51.100.1, garbage, 10.0.0.5", "10.0.0.5"),
        ('198.51.100.1, "10.0.0.9", 10.0.0.5', "10.0.0.5"),
        ("198.51.100.1, , 10.0.0.5", "10.0.0.5"),
        ("198.51.100.1, 10.0.0.6, zzz", "10.0.0.2"),  # the peer itself
        ("198.51.100.1, fd00::9%eth0, fd00::5", "fd00::5"),
        ("198.51.100.1, [fd00::9, fd00::5", "fd00::5"),
        ("198.51.100.1, 10.0.0.9:99999, 10.0.0.5", "10.0.0.5"),
        ("198.51.100.1, [10.0.0.9]:80, 10.0.0.5", "10.0.0.5"),  # brackets only for IPv6
        # all trusted: the left-most
        ("10.1.1.1, fd00::3, 10.2.2.2", "10.1.1.1"),
        # header orders: a forged left part never matters
        ("1.1.1.1, 2.2.2.2, 198.51.100.8, 10.0.0.9", "198.51.100.8"),
        ("198.51.100.8, 10.0.0.9", "198.51.100.8"),
    ],
)
def test_walk_from_the_right(xff, expected):
    assert client_ip(req("10.0.0.2", xff)) == expected


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_x_real_ip_follows_the_same_rule():
    assert client_ip(req("10.0.0.2", real="198.51.100.8")) == "198.51.100.8"
    assert client_ip(req("10.0.0.2", real='"198.51.100.8')) == "10.0.0.2"
    # X-Forwarded-For wins over X-Real-IP when both are present.
    assert client_ip(req("10.0.0.2", xff="198.51.100.9", real="198.51.100.8")) == "198.51.100.9"


def test_parse_ip_tokens():
    assert str(parse_ip(" 198.51.100.8:443 ")) == "198.51.100.8"
    assert str(parse_ip("[2001:DB8::1]:8443")) == "2001:db8::1"
    assert str(parse_ip("::ffff:198.51.100.8")) == "198.51.100.8"
    for bad in ['"198.51.100.8"', "198.51.100.8:", "198.51.100.8:0x50", "[2001:db8::1", "x" * 5000]:
        assert parse_ip(bad) is None, bad


# --- property tests over generated chains -----------------------------------------------

v4_trusted = st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))
v6_trusted = st.builds(lambda a: f"fd00::{a:x}", st.integers(1, 0xFFFF))
v4_public = st.builds(lambda a: f"198.51.100.{a}", st.integers(1, 254))
v6_public = st.builds(lambda a: f"2001:db8::{a:x}", st.integers(1, 0xFFFF))
ports = st.integers(1, 65535)


def rendered(address: st.SearchStrategy) -> st.SearchStrategy:
    """An address as a proxy may write it: bare, with a port, bracketed, spaced, mapped."""

    def forms(ip: str):
        if ":" in ip:
            opts = [st.just(ip), st.just(f"[{ip}]"), ports.map(lambda p: f"[{ip}]:{p}")]
        else:
            opts = [st.just(ip), ports.map(lambda p: f"{ip}:{p}"), st.just(f"::ffff:{ip}")]
        return st.one_of(opts).flatmap(
            lambda t: st.sampled_from(["", " ", "\t"]).map(lambda pad: pad + t + pad.strip("\t"))
        )

    return address.flatmap(forms)


garbage = st.one_of(
    st.just(""),
    st.just('"'),
    st.builds(lambda ip: f'"{ip}"', v4_public),
    st.builds(lambda ip: f"[{ip}", v6_public),
    st.builds(lambda ip: f"{ip}:99999", v4_public),
    st.builds(lambda ip: f"for={ip}", v4_public),
    st.text(alphabet='abcxyz"\\;=[]: %', min_size=1, max_size=12).filter(
        lambda t: parse_ip(t) is None
    ),
)
HOP = st.one_of(
    rendered(st.one_of(v4_trusted, v6_trusted)).map(lambda t: ("trusted", t)),
    rendered(st.one_of(v4_public, v6_public)).map(lambda t: ("untrusted", t)),
    garbage.map(lambda t: ("invalid", t)),
)
# Anything a client may put in front of what the proxies appended (commas and quotes too).
CLIENT_PREFIX = st.text(alphabet='0123456789abcdef.:,[]" \\;=%', max_size=40)


def expected_client(remote: str, hops: list[tuple[str, str]]) -> str:
    """The rule, stated over the generated kinds rather than over parsed text."""
    client = str(parse_ip(remote))
    for kind, token in reversed(hops):
        if kind == "invalid":
            return client
        client = str(parse_ip(token))
        if kind == "untrusted":
            return client
    return client


prop = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@prop
@given(
    remote=st.sampled_from(["10.0.0.2", "fd00::2", "127.0.0.1"]),
    hops=st.lists(HOP, max_size=8),
)
@override_settings(TRACKING_TRUSTED_PROXIES=PROXIES)
def test_generated_chains_follow_the_rule(remote, hops):
    xff = ",".join(token for _, token in hops)
    assert client_ip(req(remote, xff)) == expected_client(remote, hops)


@prop
@given(
    prefix=CLIENT_PREFIX,
    client=rendered(st.one_of(v4_public, v6_public)),
    proxies=st.lists(rendered(st.one_of(v4_trusted, v6_trusted)), max_size=4),
)
@override_settings(TRACKING_TRUSTED_PROXIES=PROXIES)
def test_nothing_a_client_prepends_changes_the_answer(prefix, client, proxies):
    # The first proxy appended the client's real address, later proxies their peers.
    chain = ",".join([prefix, client, *proxies])
    assert client_ip(req("10.0.0.2", chain)) == str(parse_ip(client))


@prop
@given(hops=st.lists(HOP, max_size=8), remote=st.sampled_from(["10.0.0.2", "fd00::2"]))
@override_settings(TRACKING_TRUSTED_PROXIES=PROXIES)
def test_the_answer_is_the_peer_or_a_hop_right_of_every_invalid_token(hops, remote):
    answer = client_ip(req(remote, ",".join(t for _, t in hops)))
    invalid = [i for i, (kind, _) in enumerate(hops) if kind == "invalid"]
    right_of = invalid[-1] + 1 if invalid else 0
    allowed = {str(parse_ip(remote))} | {str(parse_ip(t)) for _, t in hops[right_of:]}
    assert answer in allowed


@prop
@given(hops=st.lists(HOP, max_size=6))
def test_untrusted_peer_never_reads_the_chain(hops):
    assert client_ip(req("198.51.100.200", ",".join(t for _, t in hops))) == "198.51.100.200"


# --- through the real request paths -----------------------------------------------------


@pytest.mark.django_db
@override_settings(TRACKING_TRUSTED_PROXIES=["127.0.0.1/32"])
@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ('203.0.113.77, ", 198.51.100.8', "198.51.100.8"),
        ('2001:db8::77, ", [2001:db8::8]:443', "2001:db8::8"),
    ],
)
def test_a_recorded_login_keeps_the_address_the_proxy_appended(client, xff, expected):
    from tracking.models import Activity

    client.post(
        "/t/rec/login/", {"username": "x"}, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=xff
    )
    row = Activity.objects.get(endpoint="/t/rec/login/")
    assert (row.ip_address, row.remote_addr) == (expected, "127.0.0.1")
    assert client_address(req("127.0.0.1", xff)).forwarded_for == xff


@pytest.mark.django_db
@override_settings(
    TRACKING_TRUSTED_PROXIES=["127.0.0.1/32"],
    TRACKING_THROTTLE_RATES={"burst": "5/min", "sustained": "1000/hour"},
)
@pytest.mark.parametrize("authenticated", [False, True])
def test_rotating_forged_hops_share_one_throttle_bucket(client, django_user_model, authenticated):
    # Anonymous callers (401) and refused users (403) alike: a forged hop in front of a
    # quote used to give every request a fresh bucket (65 requests, no 429).
    if authenticated:
        client.force_login(django_user_model.objects.create_user("nosy", password="pw"))
    codes = [
        client.get(
            "/api/tracking/activities/",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=f'203.0.113.{i}, ", 198.51.100.8',
        ).status_code
        for i in range(12)
    ]
    assert codes[:5] == [403] * 5  # session authentication first: 403, not 401
    assert set(codes[5:]) == {429}
