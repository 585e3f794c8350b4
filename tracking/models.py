"""The audit log's tables.

``Activity`` holds one recorded event. Its *recorded* content (everything the request and
enrichment produced, plus the detection verdict at write time) is covered by a per-row MAC
and, once sealed, by the hash chain in ``Seal``. Review state (``flagged``,
``review_status`` and the reviewer) is mutable by design and kept out of the MAC; every change
to it is written to ``Review``.

The schema is shared by SQLite and PostgreSQL. Nothing here points *to* an activity with a
database-level foreign key, so PostgreSQL can partition ``tracking_activity`` by time.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from detectors.base import SEVERITIES
from tracking.activity_types import type_label
from tracking.fields import EncryptedJSONField, TagListField

# The engine's severity scale (``detectors.base.SEVERITIES``, ordered) as model choices,
# with translated labels.
_SEVERITY_LABELS = {
    "": _("None"),
    "low": _("Low"),
    "medium": _("Medium"),
    "high": _("High"),
    "critical": _("Critical"),
}
# django-stubs model only the one- and two-argument forms of the functional API.
Severity = models.TextChoices(  # type: ignore[call-overload]
    "Severity",
    [(value.upper() or "NONE", (value, _SEVERITY_LABELS[value])) for value in SEVERITIES],
)


class ReviewStatus(models.TextChoices):
    OPEN = "open", pgettext_lazy("review status", "Open")
    CONFIRMED = "confirmed", _("Confirmed")
    DISMISSED = "dismissed", _("Dismissed")


class NetworkKind(models.TextChoices):
    """Anonymizing or hosting exits (MaxMind Anonymous-IP, the Tor exit list)."""

    VPN = "vpn", _("VPN exit")
    HOSTING = "hosting", _("hosting provider")
    PUBLIC_PROXY = "public_proxy", _("public proxy")
    RESIDENTIAL_PROXY = "residential_proxy", _("residential proxy")
    TOR = "tor", _("Tor exit node")


class ActivityQuerySet(models.QuerySet):
    def with_tags(self, tags, *, match: str = "any") -> ActivityQuerySet:
        """Activities carrying any (or all) of ``tags``."""
        tags = [t for t in tags if t]
        if not tags:
            return self
        q = models.Q()
        for tag in tags:
            cond = models.Q(tags__contains=f",{tag},")
            q = (q & cond) if match == "all" else (q | cond)
        return self.filter(q)

    def flagged_queue(self) -> ActivityQuerySet:
        return self.filter(flagged=True, review_status=ReviewStatus.OPEN)


class Activity(models.Model):
    """Tracks comprehensive user activity data."""

    # core
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    type = models.CharField(max_length=32)
    flagged = models.BooleanField(default=False)
    tags = TagListField(blank=True, default=list)

    # user context
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(max_length=150, blank=True, default="")
    # Keyed hash (HMAC-SHA256, hex) of the session key; the raw key is never stored.
    session_id = models.CharField(max_length=64, blank=True, default="")

    # network
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # For forensics: the socket peer and the forwarding chain as received.
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    forwarded_for = models.CharField(max_length=512, blank=True, default="")
    isp = models.CharField(max_length=255, blank=True, default="")
    asn = models.PositiveBigIntegerField(null=True, blank=True)

    # geo (ISO 3166-1 alpha-2 country code; accuracy radius in km)
    country = models.CharField(max_length=2, blank=True, default="")
    region = models.CharField(max_length=128, blank=True, default="")
    city = models.CharField(max_length=128, blank=True, default="")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    accuracy_radius = models.PositiveIntegerField(null=True, blank=True)
    # Anonymizing or hosting exit ("vpn", "hosting", "public_proxy", "residential_proxy",
    # "tor"; "" for an ordinary access network): its location is the exit's, not the user's.
    network_kind = models.CharField(
        max_length=20, blank=True, default="", db_index=True, choices=NetworkKind.choices
    )
    # True while geolocation is owed (provider was down at write time).
    geo_pending = models.BooleanField(default=False)

    # device
    device = models.CharField(max_length=64, blank=True, default="")
    os = models.CharField(max_length=64, blank=True, default="")
    browser = models.CharField(max_length=64, blank=True, default="")
    is_mobile = models.BooleanField(default=False)
    is_bot = models.BooleanField(default=False)
    user_agent = models.CharField(max_length=512, blank=True, default="")

    # request
    endpoint = models.CharField(max_length=512, blank=True, default="")
    method = models.CharField(max_length=10, blank=True, default="")
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    # "success", "failure", or "" where it means nothing (tracking.outcome).
    outcome = models.CharField(max_length=16, blank=True, default="", db_index=True)
    headers = EncryptedJSONField(default=dict)
    params = EncryptedJSONField(default=dict)
    duration = models.FloatField(null=True, blank=True, help_text="milliseconds")

    # detection verdict at write time
    risk_score = models.FloatField(default=0.0)
    severity = models.CharField(max_length=8, blank=True, default="", choices=Severity.choices)

    # review (mutable, outside the MAC; history in Review)
    review_status = models.CharField(
        max_length=12, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    # integrity: position in the sealed chain (assigned when sealed) and the row's MAC
    seq = models.BigIntegerField(null=True, blank=True, db_index=True)
    mac = models.CharField(max_length=80, blank=True, default="")
    outcome = models.CharField(max_length=16, blank=True, default="", db_index=True)

    objects = ActivityQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        verbose_name = "activity"
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["user", "-timestamp"], name="trk_user_time"),
            models.Index(fields=["username", "-timestamp"], name="trk_username_time"),
            models.Index(fields=["flagged", "-timestamp"], name="trk_flagged_time"),
            models.Index(fields=["ip_address", "-timestamp"], name="trk_ip_time"),
            models.Index(fields=["type", "-timestamp"], name="trk_type_time"),
            models.Index(fields=["review_status", "-timestamp"], name="trk_review_time"),
            # "Top flagged users" (statistics) groups flagged rows by username: a small
            # partial index makes that an index-only scan instead of a heap visit per row.
            models.Index(
                fields=["username"], condition=models.Q(flagged=True), name="trk_flagged_username"
            ),
        ]
        permissions = [
            ("export_activity", "Can export activities"),
            ("review_activity", "Can flag and review activities"),
        ]

    def __str__(self) -> str:
        who = self.username or "anonymous"
        return f"{self.type} by {who} at {self.timestamp:%Y-%m-%d %H:%M:%S}"

    @property
    def type_display(self) -> str:
        return type_label(self.type)


class Intake(models.Model):
    """A synchronous request's event, committed before its response and waiting for the batch
    step that stores it as an ``Activity`` with its verdict (``tracking.pipeline.intake``).

    ``payload`` is the event encrypted as a spool line (AES-GCM with
    ``TRACKING_ENCRYPTION_KEYS``): redacted like every stored event, readable only with the
    key, and refused when altered. A narrow table with only its primary key to maintain, so
    the write a request waits for is cheap; rows live for well under a second.
    """

    id = models.UUIDField(primary_key=True)
    created = models.DateTimeField()
    payload = models.TextField()
    # "<host>:<pid>:<process start>" of the process whose writer stores it: another process
    # on the same host stores it at once when that process is gone (a restart after a crash).
    owner = models.CharField(max_length=100, default="")

    class Meta:
        verbose_name = "activity awaiting its verdict"
        verbose_name_plural = "activities awaiting their verdict"

    def __str__(self) -> str:
        return f"event {self.id} (stored {self.created:%Y-%m-%d %H:%M:%S})"


class Finding(models.Model):
    """One detector's or rule's explained verdict on one activity."""

    # No database FK: activities may live in time partitions.
    activity = models.ForeignKey(
        Activity, on_delete=models.CASCADE, db_constraint=False, related_name="findings"
    )
    timestamp = models.DateTimeField(db_index=True)  # the activity's, for per-period counts
    detector = models.CharField(max_length=64, db_index=True)
    tag = models.CharField(max_length=64, db_index=True)
    score = models.FloatField()
    severity = models.CharField(max_length=8, choices=Severity.choices, default="low")
    reason = models.CharField(max_length=512)
    evidence = models.JSONField(default=dict, blank=True)
    # A rule may suppress a detector's finding for allow-listed cases; it is kept for audit.
    suppressed = models.BooleanField(default=False)
    flag = models.BooleanField(default=False)

    class Meta:
        ordering = ["-score"]

    def __str__(self) -> str:
        return f"{self.detector}: {self.reason}"


class Review(models.Model):
    """Append-only history of review actions (flag, unflag, verdicts, deletions)."""

    class Action(models.TextChoices):
        FLAG = "flag", _("Flagged")
        UNFLAG = "unflag", _("Unflagged")
        OPEN = "open", _("Reopened")
        CONFIRMED = "confirmed", _("Confirmed")
        DISMISSED = "dismissed", _("Dismissed")
        DELETE = "delete", _("Deleted")

    activity_id = models.UUIDField(db_index=True)
    action = models.CharField(max_length=12, choices=Action.choices)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_username = models.CharField(max_length=150, blank=True, default="")
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]


class Seal(models.Model):
    """A link of the hash chain: covers activities ``first_seq..last_seq`` and the previous seal."""

    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    count = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    # "<activity id>:<leaf hash>" per line, in seq order: lets verify name what changed.
    leaves = models.TextField()
    digest = models.CharField(max_length=64)  # hash of the leaves
    prev_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=80)

    class Meta:
        ordering = ["last_seq"]


class Tombstone(models.Model):
    """Signed record of a legitimate deletion (API or retention) of a sealed or unsealed row."""

    activity_id = models.UUIDField(unique=True)
    seq = models.BigIntegerField(null=True, blank=True, db_index=True)
    leaf = models.CharField(max_length=64, blank=True, default="")
    activity_timestamp = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(default=timezone.now)
    deleted_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=32)  # "api", "purge", ...
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=80)


class Profile(models.Model):
    """Per-user detection state (known networks, places, devices, counters).

    ``key`` is ``"u:<user pk>"`` for known users, ``"n:<username>"`` for username-only
    imports. The shape of ``data`` belongs to the detectors.
    """

    key = models.CharField(max_length=200, unique=True)
    data = models.JSONField(default=dict)
    events = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class Counter(models.Model):
    """Population counters (e.g. global frequency of an ASN for the risk score)."""

    namespace = models.CharField(max_length=32)
    key = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "key"], name="trk_counter_ns_key")
        ]


class OrganisationNetwork(models.Model):
    """A network everyone in the organisation may use: learned (several established users
    reached it with their known devices within a day) or taught by a reviewer's dismissal.

    ``network`` is ``"AS<number>"``. A revoked row (``revoked_at`` set) is kept as the record and
    no longer trusted. Networks named in ``TRACKING_TRUSTED_NETWORKS`` are configuration, not rows.
    """

    class Source(models.TextChoices):
        LEARNED = "learned", "learned"
        REVIEW = "review", "taught in review"

    network = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True, default="")
    source = models.CharField(max_length=16, choices=Source.choices)
    # The established users whose logins taught it (user keys), and when (event time).
    users = models.JSONField(default=list, blank=True)
    learned_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True, default="")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["network"],
                condition=models.Q(revoked_at__isnull=True),
                name="trk_orgnet_active_network",
            )
        ]
        ordering = ["-learned_at"]

    def __str__(self) -> str:
        return f"{self.network} {self.name}".strip()


class DetectorModel(models.Model):
    """A trained detector model (e.g. IsolationForest), stored signed in a non-pickle format."""

    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    data = models.BinaryField()
    digest = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=80)
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="trk_model_name_version")
        ]
        ordering = ["name", "-version"]


class Checkpoint(models.Model):
    """Signed record that retention removed every row of the seals up to ``through_seq``.

    Seals themselves are kept (they are small), so the chain still verifies end to end; rows
    covered by a checkpoint are simply not expected any more.
    """

    through_seq = models.BigIntegerField()
    before = models.DateTimeField()
    removed = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=32, default="purge")
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=80)

    class Meta:
        ordering = ["through_seq"]


class RollupCounts(models.Model):
    """The counters an hourly or daily rollup row keeps per (bucket, type, country)."""

    bucket = models.DateTimeField()
    type = models.CharField(max_length=32)
    country = models.CharField(max_length=2, blank=True, default="")
    count = models.BigIntegerField(default=0)
    flagged = models.BigIntegerField(default=0)
    duration_sum = models.FloatField(default=0.0)
    duration_count = models.BigIntegerField(default=0)
    duration_min = models.FloatField(null=True, blank=True)
    duration_max = models.FloatField(null=True, blank=True)

    class Meta:
        abstract = True


class Rollup(RollupCounts):
    """Pre-aggregated counts per hour, type and country, so statistics never scan the log.
    ``bucket`` is the start of the hour, UTC."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "type", "country"], name="trk_rollup_dims")
        ]


class DailyRollup(RollupCounts):
    """``Rollup`` summed per UTC day: long statistics windows read ~24x fewer rows.

    Maintained alongside the hourly rows by ``tracking.storage.rollups`` (same columns; ``bucket`` is
    midnight UTC). Hourly rows still serve the partial-day edges of a window.
    """

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket", "type", "country"], name="trk_daily_rollup_dims"
            )
        ]


class BlockScope(models.TextChoices):
    ADDRESS = "address", _("Address")
    ACCOUNT = "account", _("Account")
    ADDRESS_ACCOUNT = "address+account", _("Address and account")


class Block(models.Model):
    """A refusal of authentication for a source, by a rule, a detector or a person.

    ``address`` is a network in CIDR form (a single address is ``/32`` or ``/128``);
    ``username`` is the account's username key (case-folded). An ``account`` block never
    refuses the account at a network its profile knows (see ``tracking.respond.blocks``).
    Rows are never deleted: creation and lifting (who, when, why) stay as the audit trail.
    """

    scope = models.CharField(max_length=16, choices=BlockScope.choices)
    address = models.CharField(max_length=49, blank=True, default="", db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="", db_index=True)
    reason = models.CharField(max_length=512)
    # What created it: "rule:<id>", a detector's name, or "manual".
    source = models.CharField(max_length=64)
    # The activity whose finding requested the block (none for manual blocks).
    activity_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_by_username = models.CharField(max_length=150, blank=True, default="")
    lift_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["lifted_at", "expires_at"], name="trk_block_active")]

    def __str__(self) -> str:
        target = " / ".join(v for v in (self.address, self.username) if v)
        return f"{self.get_scope_display()} block of {target}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.lifted_at is not None:
            return "lifted"
        return "active" if self.is_active() else "expired"


class OutboxEntry(models.Model):
    """Something to tell alert channels and forwarders: a committed batch of activities
    (written in the batch's own transaction, so it exists exactly when the rows do) or a
    block created or lifted. Consumers keep their position in ``DeliveryState.position``;
    entries every consumer has passed are pruned."""

    class Kind(models.TextChoices):
        ACTIVITIES = "activities", _("Activities")
        BLOCK_CREATED = "block_created", _("Block created")
        BLOCK_LIFTED = "block_lifted", _("Block lifted")

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Activities: their ids, comma separated; blocks: the block's fields.
    activity_ids = models.TextField(blank=True, default="")
    count = models.PositiveIntegerField(default=0)  # activities in the entry
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]


class DeliveryState(models.Model):
    """Cursor, lease and counters of one alert channel (``alert:<name>``) or forwarder
    (``forward:<name>``), shared by every process that delivers."""

    name = models.CharField(max_length=200, unique=True)
    position = models.BigIntegerField(default=0)  # last OutboxEntry id consumed
    seal_position = models.BigIntegerField(default=0)  # last Seal.last_seq forwarded
    # Outbox ids skipped over while their transaction may still commit: [[id, first seen]].
    gaps = models.JSONField(default=list, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    last_delivery = models.DateTimeField(null=True, blank=True)
    last_failure = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    # Consecutive failed attempts (forwarders back off on it) and when to try again.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField(null=True, blank=True)
    # Rate limit window of an alert channel.
    window_start = models.DateTimeField(null=True, blank=True)
    window_count = models.PositiveIntegerField(default=0)


class PendingAlert(models.Model):
    """One alert message being grouped or waiting to be sent (or given up on: ``dead``)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DEAD = "dead", _("Dead letter")

    channel = models.CharField(max_length=200, db_index=True)
    key = models.CharField(max_length=300)  # "<kind>|<rule>|<source>"
    kind = models.CharField(max_length=16)
    opened_at = models.DateTimeField(default=timezone.now)
    send_after = models.DateTimeField(db_index=True)
    # [{"id": activity id, ...summary}] or the block's payload, never request content.
    items = models.JSONField(default=list)
    severity = models.CharField(max_length=8, blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["send_after", "id"]
        indexes = [models.Index(fields=["channel", "status", "key"], name="trk_alert_group")]
