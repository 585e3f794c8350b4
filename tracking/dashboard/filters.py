"""The dashboard's filters: parsed once from the query string, applied to any queryset.

Parameter names follow the review API (``tags``, ``type``, ``country``, ``username``,
``user``, ``review_status``, ``since``, ``until``) so the page can hand the same query
string to ``api/tracking/stats/``; ``severity`` is the dashboard's own. A bad value is
reported with the parameter named and that filter is dropped; the others still apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Q
from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from tracking.models import ActivityQuerySet, ReviewStatus, Severity

UTC = dt_timezone.utc

_TAG = re.compile(r"^[\w.:-]{1,64}$")
_TYPE = re.compile(r"^[\w.-]{1,32}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")

SEVERITIES = [value for value, _ in Severity.choices if value]
REVIEW_STATUSES = [value for value, _ in ReviewStatus.choices]
# The queue shows open items unless the reviewer asks for another status or "any".
ANY = "any"

# Names carried from the page to the JSON endpoints and the stats API.
PARAMS = (
    "tags",
    "severity",
    "review_status",
    "type",
    "country",
    "username",
    "user",
    "since",
    "until",
)


@dataclass
class Filters:
    tags: list[str] = field(default_factory=list)
    severity: str = ""
    review_status: str = ""  # "" = not given; ANY = explicitly every status
    type: str = ""
    country: str = ""
    username: str = ""
    user: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def apply(self, qs: ActivityQuerySet, *, default_status: str = "") -> ActivityQuerySet:
        """Narrow ``qs`` (of Activity); ``default_status`` applies when none was given."""
        if self.tags:
            qs = qs.with_tags(self.tags)
        if self.severity:
            qs = qs.filter(severity=self.severity)
        status = self.review_status or default_status
        if status and status != ANY:
            qs = qs.filter(review_status=status)
        if self.type:
            qs = qs.filter(type=self.type)
        if self.country:
            qs = qs.filter(country=self.country)
        if self.username:
            qs = qs.filter(username=self.username)
        if self.user is not None:
            qs = qs.filter(user_id=self.user)
        if self.since:
            qs = qs.filter(timestamp__gte=self.since)
        if self.until:
            qs = qs.filter(timestamp__lt=self.until)
        return qs

    def query(self) -> dict[str, str]:
        """The valid filters as query parameters (what the page passes on)."""
        out: dict[str, str] = {}
        if self.tags:
            out["tags"] = ",".join(self.tags)
        for name in ("severity", "review_status", "type", "country", "username"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.user is not None:
            out["user"] = str(self.user)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                out[name] = value.isoformat()
        return out

    @property
    def active(self) -> bool:
        return bool(self.query())


def _moment(text: str, *, end: bool) -> datetime | None:
    """An ISO date-time, or a date (its start; for ``until`` the next day's start)."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            return None
        moment = datetime.combine(day, time.min)
        if end:
            moment += timedelta(days=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse(params: QueryDict | dict[str, str]) -> Filters:
    """Read the filters; invalid ones land in ``errors`` (parameter → message), not applied."""
    f = Filters()

    def get(name: str) -> str:
        return (params.get(name) or "").strip()

    # "tag" is accepted too: one detector tag is what a reviewer usually types.
    raw_tags = [t.strip() for t in f"{get('tags')},{get('tag')}".split(",") if t.strip()]
    bad = [t for t in raw_tags if not _TAG.match(t)]
    if bad:
        f.errors["tags"] = _(
            "Tags are letters, digits, '_', '.', ':' or '-' (up to 64 characters)."
        )
    else:
        f.tags = raw_tags

    severity = get("severity").lower()
    if severity and severity not in SEVERITIES:
        f.errors["severity"] = _("Severity must be one of: %(values)s.") % {
            "values": ", ".join(SEVERITIES)
        }
    else:
        f.severity = severity

    status = get("review_status").lower()
    if status and status not in (*REVIEW_STATUSES, ANY):
        f.errors["review_status"] = _("Review status must be one of: %(values)s or %(any)s.") % {
            "values": ", ".join(REVIEW_STATUSES),
            "any": ANY,
        }
    else:
        f.review_status = status

    type_ = get("type")
    if type_ and not _TYPE.match(type_):
        f.errors["type"] = _("Type is a code such as AUTH or PAYMENT.")
    else:
        f.type = type_.upper()

    country = get("country")
    if country and not _COUNTRY.match(country):
        f.errors["country"] = _("Country is a two-letter ISO code such as GB.")
    else:
        f.country = country.upper()

    username = get("username")
    if len(username) > 150:
        f.errors["username"] = _("Username is at most 150 characters.")
    else:
        f.username = username

    user = get("user")
    if user:
        if user.isdigit() and len(user) < 19:
            f.user = int(user)
        elif len(user) <= 150 and not f.username:
            # A name where an id was expected: the reviewer means the username.
            f.username = user
        else:
            f.errors["user"] = _("User is a numeric user id or a username (up to 150 characters).")

    for name in ("since", "until"):
        text = get(name)
        if not text:
            continue
        moment = _moment(text, end=name == "until")
        if moment is None:
            f.errors[name] = (
                _("Since is an ISO date (2026-01-31) or date-time.")
                if name == "since"
                else _("Until is an ISO date (2026-01-31) or date-time.")
            )
        else:
            setattr(f, name, moment)
    return f


def user_q(activity) -> Q | None:
    """Whose history an activity belongs to: the user, else the username, else the session."""
    if activity.user_id is not None:
        return Q(user_id=activity.user_id)
    if activity.username:
        return Q(username=activity.username, user__isnull=True)
    if activity.session_id:
        return Q(session_id=activity.session_id)
    return None
