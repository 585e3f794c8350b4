"""Organisation networks on the Django side: configured, learned, taught in review, revoked.

``trusted()`` combines ``TRACKING_TRUSTED_NETWORKS`` with the active ``OrganisationNetwork``
rows (re-read at most every ``TrustedCache.interval`` seconds, at once after a change in this
process). ``load_learner`` / ``save_learner`` keep the learner's candidates between batches in
``Counter`` rows (namespace ``orgnet``, key ``AS<n>|<user key>``, value the evidence's epoch
second), and store a network it learned as an ``OrganisationNetwork`` row. ``teach`` (a
reviewer's dismissal "for everyone") and ``revoke`` are the review side.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from detectors.orgnetworks import NetworkLearner, TrustedNetworks, parse_trusted
from tracking.conf import on_reload, tracking_settings
from tracking.models import Counter, OrganisationNetwork

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.detection")

NAMESPACE = "orgnet"


class TrustedCache:
    """The configured and stored organisation networks, trusted for ``interval`` seconds."""

    timer = staticmethod(time.monotonic)
    interval = 5.0

    def __init__(self) -> None:
        self.value: TrustedNetworks | None = None
        self.read_at = 0.0

    def get(self) -> TrustedNetworks:
        now = self.timer()
        if self.value is not None and now - self.read_at < self.interval:
            return self.value
        try:
            trusted = parse_trusted(tracking_settings.TRUSTED_NETWORKS)
        except ValueError as exc:  # tracking.E057 reports it; detection goes on without
            logger.error("TRACKING_TRUSTED_NETWORKS ignored: %s", exc)
            trusted = TrustedNetworks()
        for network, name in OrganisationNetwork.objects.filter(
            revoked_at__isnull=True
        ).values_list("network", "name"):
            try:
                trusted.add(network, name or network)
            except ValueError:
                logger.error("organisation network %r is not a network; ignored", network)
        self.value, self.read_at = trusted, now
        return trusted

    def clear(self) -> None:
        self.value = None


trusted_cache = TrustedCache()
on_reload(trusted_cache.clear)


def trusted() -> TrustedNetworks:
    return trusted_cache.get()


def _epoch_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def load_learner(first_epoch: float) -> NetworkLearner:
    """A learner with the candidates still inside its window at ``first_epoch``."""
    learner = NetworkLearner()
    horizon = first_epoch - learner.window_days * 86400
    for key, epoch in Counter.objects.filter(namespace=NAMESPACE, count__gte=horizon).values_list(
        "key", "count"
    ):
        network, _, user = key.partition("|")
        learner.candidates.setdefault(network, {})[user] = float(epoch)
    return learner


def save_learner(learner: NetworkLearner, last_epoch: float) -> list[OrganisationNetwork]:
    """Store the learner's candidates and the networks it learned; returns the new rows."""
    created: list[OrganisationNetwork] = []
    if not learner.touched and not learner.learned:
        return created
    horizon = last_epoch - learner.window_days * 86400
    Counter.objects.filter(namespace=NAMESPACE, count__lt=horizon).delete()
    for network in learner.learned:
        Counter.objects.filter(namespace=NAMESPACE, key__startswith=f"{network}|").delete()
    for key in learner.touched:
        network, _, user = key.partition("|")
        epoch = learner.candidates.get(network, {}).get(user)
        if epoch is not None:
            Counter.objects.update_or_create(
                namespace=NAMESPACE, key=key[:200], defaults={"count": round(epoch)}
            )
    for network, users in learner.learned.items():
        try:
            with transaction.atomic():
                row = OrganisationNetwork.objects.create(
                    network=network,
                    name=f"learned {network}",
                    source=OrganisationNetwork.Source.LEARNED,
                    users=users,
                    learned_at=_epoch_dt(last_epoch),
                )
        except IntegrityError:  # already active (another worker learned it first)
            continue
        created.append(row)
        logger.warning("organisation network %s learned from %d users", network, len(users))
    if created:
        trusted_cache.clear()
    return created


def teach(asn: int | None, *, by: Any, name: str = "") -> OrganisationNetwork | None:
    """A reviewer's dismissal made the network trusted for everyone (None without an AS)."""
    if asn is None:
        return None
    network = f"AS{asn}"
    existing = OrganisationNetwork.objects.filter(network=network, revoked_at__isnull=True).first()
    if existing is not None:
        return existing
    username = by.get_username() if getattr(by, "is_authenticated", False) else ""
    try:
        with transaction.atomic():
            row = OrganisationNetwork.objects.create(
                network=network,
                name=name or f"taught in review {network}",
                source=OrganisationNetwork.Source.REVIEW,
                created_by=username,
            )
    except IntegrityError:
        return OrganisationNetwork.objects.filter(network=network, revoked_at__isnull=True).first()
    trusted_cache.clear()
    return row


def revoke(row: OrganisationNetwork, *, by: Any) -> OrganisationNetwork:
    """Stop trusting a learned or taught network (the row stays as the record)."""
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.revoked_by = by.get_username() if getattr(by, "is_authenticated", False) else ""
        row.save(update_fields=["revoked_at", "revoked_by"])
        trusted_cache.clear()
    return row
