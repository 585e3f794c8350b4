"""Campaigns grouped by shared traits, and rotation inside one network.

The site-wide counts of :mod:`detectors.campaign` see a botnet once the whole site's failures
stand out; many campaigns are visible sooner, and on a busier site only, by what their
attempts share. Every failed login from outside the account's own networks and browsers (a
"stranger": see :func:`detectors.features.stranger` — the owner mistyping at home or in the
office is never counted) is counted under each of its traits:

- ``ua``: the exact user agent (a botnet's tool or its one spoofed browser);
- ``kind``: the network kind (residential proxy, hosting, VPN, public proxy, Tor);
- ``net``: the address's /24 (IPv6: /64) — brute force or spraying from rotating addresses
  of one block;
- ``asn``: the address's AS — rotation across the blocks of one provider.

Counts are kept per ``slot_minutes`` (10) slot (``trf`` failures, ``tra`` addresses new in
the slot, ``tru`` names that do not exist) and judged over the last ``window_minutes`` (60).
A trait's usual level is learned from its own history: its stranger failures since the site's
history began (``trn``, this window's left out) per hour; a window is a campaign when it has
at least ``min_addresses`` (3: one address is the per-address rules' business) and
``max(floor, ratio × (usual + 3·√usual))`` failures, the floor being ``min_ua`` (8),
``min_kind`` (5), ``min_network`` (5) or ``min_asn`` (8) — a big provider's AS where many
travellers and new phones fail legitimately learns a higher bar; its /24 counts first.

Two shapes of the window make a group cross sooner (its floor drops to ``min_shaped``, 5;
the learned bar stays, so a busy provider where travellers fail all day is not lowered):

- a password spray: at least ``min_shaped`` failures on many distinct accounts, one or two
  tries each (``trk`` accounts / failures ≥ ``spray_ratio``, 0.7). One account tried again
  and again is named brute force in the explanation; the per-account rules judge that.
- a machine cadence: the last ``min_cadence`` (6) gaps between the group's failures, none
  longer than ``cadence_gap_seconds`` (900), are steady (coefficient of variation ≤
  ``cadence_cv``, 0.25) or a tight burst (≤ 1 s apart on average). People failing at random
  moments have a CV near 1; a scheduler rotating addresses keeps its beat. This also finds a
  slow campaign whose hourly count stays under every floor.

Accounts are counted once per window per group (``trw`` holds the slot an account was last
tried in, under a short hash of its key, never the name; its ``trk`` count moves there); the cadence is a moving mean
and variance of the gaps (``trt`` last failure, ``trm``/``trv`` in ms, ``trr`` run length),
updated in O(1) per failure.

Nothing here reads a database or the clock: counters come through ``Population`` like the
site-wide ones, a handful per failed login, none for any other event.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.campaign import FIRST, HOUR, backfilled
from detectors.features import stranger, unknown_name
from detectors.population import Population
from detectors.profile import UserProfile, ua_key

TRAITS: tuple[str, ...] = ("ua", "kind", "net", "asn")
# The tag of a crossing: rotation inside one network, or a campaign sharing a client trait.
TAGS: dict[str, str] = {
    "ua": "login_campaign",
    "kind": "login_campaign",
    "net": "network_rotation",
    "asn": "network_rotation",
}


def network_of(ip: str | None) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address rotates inside."""
    if not ip:
        return ""
    if ":" in ip:
        groups = ip.split("::")[0].split(":") if "::" in ip else ip.split(":")
        return ":".join((groups + ["0"] * 4)[:4]) + "::/64"
    return ip.rsplit(".", 1)[0] + ".0/24"


def traits_of(event: Observation) -> dict[str, str]:
    """The event's value of each trait (traits it does not have are left out)."""
    out: dict[str, str] = {}
    if event.user_agent:
        out["ua"] = ua_key(event.user_agent)
    if event.network_kind:
        out["kind"] = event.network_kind
    net = network_of(event.ip_address)
    if net:
        out["net"] = net
    if event.asn is not None:
        out["asn"] = str(event.asn)
    return out


# The cadence's moving statistics weigh the last dozen gaps (exactly averaged before that).
CADENCE_SPAN = 12
BURST_MS = 1000


def account_of(event: Observation) -> str:
    """A short hash of the account tried (counter keys never hold the name)."""
    name = event.user_key or event.username
    if not name:
        return ""
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


def cadence_step(
    state: tuple[int, int, int, int], epoch: float, cap_ms: int
) -> tuple[int, int, int, int] | None:
    """The group's (last ms, run, mean gap ms, variance ms²) after a failure at ``epoch``;
    None for a failure older than the last (out of order: the state is left alone)."""
    now = int(epoch * 1000)
    last, run, mean, var = state
    if not last:
        return (now, 0, 0, 0)
    gap = now - last
    if gap < 0:
        return None
    if gap > cap_ms:
        return (now, 0, 0, 0)
    run += 1
    w = 1.0 / min(run, CADENCE_SPAN)
    diff = gap - mean
    mean_f = mean + w * diff
    var_f = (1.0 - w) * (var + w * diff * diff)
    return (now, run, round(mean_f), round(var_f))


def describe(trait: str, event: Observation) -> str:
    if trait == "ua":
        client = " on ".join(p for p in (event.browser, event.os) if p) or "an unknown client"
        return f"sharing the user agent of {client}"
    if trait == "kind":
        return f"of {event.network_kind.replace('_', ' ')} networks"
    if trait == "net":
        return f"rotating inside {network_of(event.ip_address)}"
    return f"rotating inside AS{event.asn}" + (f" ({event.isp})" if event.isp else "")


def explain_shape(crossing: dict[str, Any]) -> str:
    out = ""
    failures, accounts = crossing["failures"], crossing["accounts"]
    if crossing["shape"] == "spray":
        out += f"; {accounts} accounts, {failures / accounts:.1f} tries each: a password spray"
    elif crossing["shape"] == "brute_force":
        out += f"; 1 account, {failures} tries: brute force"
    beat = crossing["cadence"]
    if beat is not None:
        if beat["gap_ms"] <= BURST_MS:
            out += f"; in a tight burst, {beat['gap_ms']} ms apart on average"
        else:
            out += (
                f"; at a machine cadence, one every {beat['gap_ms'] / 1000:.0f} s "
                f"± {beat['sd_ms'] / 1000:.0f} s"
            )
    return out


class CampaignTraits(Detector):
    name = "campaign_traits"
    tag = "login_campaign"
    retroactive = True

    def __init__(
        self,
        slot_minutes: int = 10,
        window_minutes: int = 60,
        min_history_hours: int = 48,
        ratio: float = 3.0,
        min_addresses: int = 3,
        min_ua: int = 8,
        min_kind: int = 5,
        min_network: int = 5,
        min_asn: int = 8,
        weight: float = 0.8,
        backfill: bool = True,
        min_shaped: int = 5,
        spray_ratio: float = 0.7,
        min_cadence: int = 6,
        cadence_cv: float = 0.25,
        cadence_gap_seconds: int = 900,
        shaped_weight: float = 0.9,
    ) -> None:
        self.slot_minutes = slot_minutes
        self.window_minutes = window_minutes
        self.min_history_hours = min_history_hours
        self.ratio = ratio
        self.min_addresses = min_addresses
        self.min_ua = min_ua
        self.min_kind = min_kind
        self.min_network = min_network
        self.min_asn = min_asn
        self.weight = weight
        self.backfill = backfill
        self.min_shaped = min_shaped
        self.spray_ratio = spray_ratio
        self.min_cadence = min_cadence
        self.cadence_cv = cadence_cv
        self.cadence_gap_seconds = cadence_gap_seconds
        self.shaped_weight = shaped_weight

    def validate(self) -> None:
        check_number("slot_minutes", self.slot_minutes, low=1, high=60)
        check_number("window_minutes", self.window_minutes, low=self.slot_minutes, high=1440)
        check_number("min_history_hours", self.min_history_hours, low=1)
        check_number("ratio", self.ratio, low=1)
        for name in (
            "min_addresses",
            "min_ua",
            "min_kind",
            "min_network",
            "min_asn",
            "min_shaped",
        ):
            check_number(name, getattr(self, name), low=1)
        check_number("weight", self.weight, low=0, high=1)
        check_number("shaped_weight", self.shaped_weight, low=0, high=1)
        check_number("spray_ratio", self.spray_ratio, low=0.01, high=1)
        check_number("min_cadence", self.min_cadence, low=2)
        check_number("cadence_cv", self.cadence_cv, low=0, high=1)
        check_number("cadence_gap_seconds", self.cadence_gap_seconds, low=1, high=86400)

    def floors(self) -> dict[str, int]:
        return {
            "ua": self.min_ua,
            "kind": self.min_kind,
            "net": self.min_network,
            "asn": self.min_asn,
        }

    @staticmethod
    def applies(event: Observation) -> bool:
        return event.type == "AUTH" and event.failed

    def _slot(self, event: Observation) -> int:
        return int(event.epoch) // (60 * self.slot_minutes)

    def _slots(self) -> int:
        return max(1, self.window_minutes // self.slot_minutes)

    @staticmethod
    def _seen(event: Observation, slot: int) -> str:
        # An address (with its client) counts once per slot under every trait it has.
        return f"{slot}|{event.ip_address}|{ua_key(event.user_agent)}"

    def population_keys(self, event: Observation) -> list[tuple[str, str]]:
        if not self.applies(event):
            return []
        slot = self._slot(event)
        keys: list[tuple[str, str]] = [(FIRST, "hour"), ("trs", self._seen(event, slot))]
        account = account_of(event)
        for trait, value in traits_of(event).items():
            key = f"{trait}:{value}"
            keys.extend((metric, key) for metric in ("trn", "trt", "trr", "trm", "trv"))
            if account:
                keys.append(("trw", f"{key}|{account}"))
            for s in range(slot - self._slots() + 1, slot + 1):
                keys.extend((metric, f"{key}|{s}") for metric in ("trf", "tra", "tru", "trk"))
        return keys

    @staticmethod
    def _cadence_state(pop: Population, key: str) -> tuple[int, int, int, int]:
        return (
            pop.count("trt", key),
            pop.count("trr", key),
            pop.count("trm", key),
            pop.count("trv", key),
        )

    def _last_slot(self, pop: Population, key: str, account: str, slot: int) -> int | None:
        """The slot in this window the account was last tried in under the group (``trw``
        holds it + 1), None when it was not: each account is counted once, in ``trk`` of its
        latest slot, so a window's sum is its number of distinct accounts."""
        last = pop.count("trw", f"{key}|{account}") - 1
        return last if last > slot - self._slots() else None

    def _new_account(self, pop: Population, key: str, account: str, slot: int) -> bool:
        return bool(account) and self._last_slot(pop, key, account, slot) is None

    def regular(self, run: int, mean: int, var: int) -> bool:
        """A steady beat or a tight burst over the last ``min_cadence`` gaps or more."""
        if run < self.min_cadence:
            return False
        if mean <= BURST_MS:
            return True
        n = min(run, CADENCE_SPAN)
        # The moving variance divides by n; the sample variance by n - 1.
        return var * n / (n - 1) <= (self.cadence_cv * mean) ** 2

    def note(self, event: Observation, profile: UserProfile | None, context: Context) -> None:
        pop = context.population
        if pop is None or not self.applies(event):
            return
        # The site's history of failed logins starts with its first one, stranger or not.
        pop.set_once(FIRST, "hour", int(event.epoch) // HOUR)
        if not stranger(event, profile):
            return
        slot = self._slot(event)
        new_address = pop.count("trs", self._seen(event, slot)) == 0
        unknown = unknown_name(profile)
        account = account_of(event)
        cap_ms = self.cadence_gap_seconds * 1000
        for trait, value in traits_of(event).items():
            key = f"{trait}:{value}"
            pop.add("trn", key)
            pop.add("trf", f"{key}|{slot}")
            if new_address:
                pop.add("tra", f"{key}|{slot}")
            if unknown:
                pop.add("tru", f"{key}|{slot}")
            if account:
                last = self._last_slot(pop, key, account, slot)
                if last != slot:
                    if last is not None:  # moved to its latest slot
                        pop.put("trk", f"{key}|{last}", pop.count("trk", f"{key}|{last}") - 1)
                    pop.add("trk", f"{key}|{slot}")
                    pop.put("trw", f"{key}|{account}", slot + 1)
            step = cadence_step(self._cadence_state(pop, key), event.epoch, cap_ms)
            if step is not None:
                for metric, number in zip(("trt", "trr", "trm", "trv"), step, strict=True):
                    pop.put(metric, key, number)
        pop.add("trs", self._seen(event, slot))

    def shape(self, failures: int, accounts: int) -> str:
        """``spray`` (many accounts, one or two tries each), ``brute_force`` (one account
        tried again and again) or "" over the window's failures of a group."""
        if failures < self.min_shaped or accounts < 1:
            return ""
        if accounts >= self.spray_ratio * failures:
            return "spray"
        return "brute_force" if accounts == 1 else ""

    def bound(self, usual: float, floor: int) -> float:
        return max(float(floor), self.ratio * (usual + 3.0 * math.sqrt(usual)))

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        pop = context.population
        if pop is None or not self.applies(event) or not stranger(event, profile):
            return []
        first = pop.count(FIRST, "hour")
        hour = int(event.epoch) // HOUR
        if not first or hour - first < self.min_history_hours:
            return []
        slot = self._slot(event)
        slots = range(slot - self._slots() + 1, slot + 1)
        new_address = int(pop.count("trs", self._seen(event, slot)) == 0)
        unknown = unknown_name(profile)
        account = account_of(event)
        cap_ms = self.cadence_gap_seconds * 1000
        hours = max(1.0, (event.epoch - first * HOUR) / HOUR - self.window_minutes / 60)
        crossed: list[dict[str, Any]] = []
        for trait, value in traits_of(event).items():
            key = f"{trait}:{value}"
            # This event counts too, as ``note`` will count it.
            failures = sum(pop.count("trf", f"{key}|{s}") for s in slots) + 1
            addresses = sum(pop.count("tra", f"{key}|{s}") for s in slots) + new_address
            if addresses < self.min_addresses:
                continue
            usual = max(0, pop.count("trn", key) - failures + 1) / hours
            floor = self.floors()[trait]
            if failures < self.bound(usual, min(floor, self.min_shaped)):
                continue  # short of the bar even with a spray shape or a cadence
            accounts = sum(pop.count("trk", f"{key}|{s}") for s in slots) + int(
                self._new_account(pop, key, account, slot)
            )
            shape = self.shape(failures, accounts)
            step = cadence_step(self._cadence_state(pop, key), event.epoch, cap_ms)
            cadence = step is not None and self.regular(*step[1:])
            if shape == "spray" or cadence:
                floor = min(floor, self.min_shaped)
            bound = self.bound(usual, floor)
            if failures < bound:
                continue
            crossed.append(
                {
                    "trait": trait,
                    "failures": failures,
                    "addresses": addresses,
                    "accounts": accounts,
                    "shape": shape,
                    "cadence": (
                        {"gap_ms": step[2], "sd_ms": round(math.sqrt(step[3])), "gaps": step[1]}
                        if cadence and step is not None
                        else None
                    ),
                    "unknown_names": sum(pop.count("tru", f"{key}|{s}") for s in slots)
                    + int(unknown),
                    "usual_per_hour": round(usual, 2),
                    "threshold": round(bound, 2),
                    "ratio": failures / bound,
                }
            )
        if not crossed:
            return []
        worst = max(crossed, key=lambda c: c["ratio"])
        trait = worst["trait"]
        reason = (
            f"{'Network rotation' if TAGS[trait] == 'network_rotation' else 'Login campaign'}: "
            f"{worst['failures']} failed logins in {self.window_minutes} min from "
            f"{worst['addresses']} addresses {describe(trait, event)}"
            + (
                f", {worst['unknown_names']} on names that do not exist"
                if worst["unknown_names"]
                else ""
            )
            + explain_shape(worst)
            + f"; usual ≤ {max(1, math.ceil(worst['usual_per_hour']))} per hour"
        )
        shaped = worst["shape"] == "spray" or worst["cadence"] is not None
        for c in crossed:
            c.pop("ratio")
        return [
            Finding(
                detector=self.name,
                tag=TAGS[trait],
                score=self.shaped_weight if shaped else self.weight,
                severity="high",
                reason=reason,
                evidence={
                    "trait": trait,
                    "traits": crossed,
                    "unknown_account": unknown,
                    "window_minutes": self.window_minutes,
                },
                extra_tags=tuple(sorted({TAGS[c["trait"]] for c in crossed} - {TAGS[trait]})),
            )
        ]

    def revisit(
        self, judged: list[tuple[Observation, UserProfile | None, list[Finding]]]
    ) -> dict[int, list[Finding]]:
        """The batch's earlier failures from strangers that share a crossed trait value and
        were counted in the crossing window get its finding too."""
        if not self.backfill:
            return {}
        hits: list[tuple[int, int, set[tuple[str, str]], Finding]] = []
        for k, (event, _, findings) in enumerate(judged):
            for f in findings:
                if f.detector == self.name and not f.suppressed:
                    own = traits_of(event)
                    crossed = {(c["trait"], own.get(c["trait"], "")) for c in f.evidence["traits"]}
                    hits.append((k, self._slot(event), crossed, f))
                    break
        if not hits:
            return {}
        hit_at = {k for k, *_ in hits}
        added: dict[int, list[Finding]] = {}
        for k, (event, profile, _) in enumerate(judged):
            if k in hit_at or not self.applies(event) or not stranger(event, profile):
                continue
            slot, shared = self._slot(event), set(traits_of(event).items())
            for j, hit_slot, crossed, finding in hits:
                if j > k and slot > hit_slot - self._slots() and crossed & shared:
                    added[k] = [backfilled(finding, judged[j][0], j - k)]
                    break
        return added
