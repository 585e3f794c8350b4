"""The list's filters (django-filter), shared by the list, stats and export endpoints.

Every value is validated by a form field: a bad value is a 400 naming the parameter
(``{"since": ["Enter a valid date/time."]}``), never a 500 and never silently ignored.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import Exists, Lookup, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tracking.dates import parse_iso_date, parse_iso_datetime
from tracking.models import Activity, Finding, ReviewStatus, Severity
from tracking.outcome import FAILURE, SUCCESS

UTC = dt_timezone.utc

TOKEN_RE = re.compile(r"^[\w.:\-]{1,64}$")
TYPE_RE = re.compile(r"^[\w\-]{1,32}$")
METHOD_RE = re.compile(r"^[A-Za-z]{1,10}$")
COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_SPACE_OFFSET_RE = re.compile(r"(?<=\d) (\d{2}:?\d{2})$")


# --- CIDR matching ----------------------------------------------------------------------


class NetContains(Lookup):
    """PostgreSQL ``inet <<= cidr``: the address lies in the network (uses the inet type)."""

    lookup_name = "net_within"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        return "%s", (str(value),)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} <<= {rhs}::inet", (*lhs_params, *rhs_params)


Activity._meta.get_field("ip_address").register_lookup(NetContains)  # type: ignore[union-attr]


def _ipv4_prefix_q(field: str, net: ipaddress.IPv4Network) -> Q:
    """Text-prefix conditions matching exactly the addresses of an IPv4 network.

    Addresses are stored in dotted-quad text on SQLite, so a network is a set of prefixes
    ending at an octet boundary: whole octets as-is, the partial octet enumerated
    (at most 128 values), each prefix closed with a dot.
    """
    if net.prefixlen == 32:
        return Q(**{field: str(net.network_address)})
    octets = str(net.network_address).split(".")
    whole, partial = divmod(net.prefixlen, 8)
    head = octets[:whole]
    if partial == 0:
        if not head:
            return Q(**{f"{field}__contains": "."}) & ~Q(**{f"{field}__contains": ":"})
        return Q(**{f"{field}__startswith": ".".join(head) + "."})
    start = int(octets[whole])
    q = Q()
    for value in range(start, start + 2 ** (8 - partial)):
        prefix = ".".join([*head, str(value)])
        if whole == 3:
            q |= Q(**{field: prefix})
        else:
            q |= Q(**{f"{field}__startswith": prefix + "."})
    return q


def filter_network(queryset: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    """Activities whose ``ip_address`` lies in ``network``, on any database."""

    vendor = connections[queryset.db].vendor
    if vendor == "postgresql":
        return queryset.filter(ip_address__net_within=str(network))
    if network.version == 4:
        return queryset.filter(_ipv4_prefix_q("ip_address", network))
    # IPv6 text has many spellings: match the distinct stored IPv6 values in Python.
    candidates = (
        Activity.objects.filter(ip_address__contains=":")
        .order_by()
        .values_list("ip_address", flat=True)
        .distinct()
    )
    matching = []
    for text in candidates:
        try:
            if ipaddress.ip_address(text) in network:
                matching.append(text)
        except ValueError:
            continue
    return queryset.filter(ip_address__in=matching)


# --- form fields ------------------------------------------------------------------------


class IPOrNetworkField(forms.CharField):
    default_error_messages = {
        "invalid": gettext_lazy("Enter a valid IPv4 or IPv6 address or CIDR network.")
    }

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if not value:
            return None
        try:
            if "/" in value:
                return ipaddress.ip_network(value, strict=False)
            return ipaddress.ip_address(value)
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class DateOrDateTimeField(forms.Field):
    """ISO 8601 date or date-time; naive values are in the current time zone.

    ``end=True`` makes a bare date mean the end of that day (``until=2024-01-31`` includes
    the whole 31st).
    """

    default_error_messages = {"invalid": gettext_lazy("Enter a valid date/time.")}

    def __init__(self, *args: Any, end: bool = False, **kwargs: Any) -> None:
        self.end = end
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        if isinstance(value, datetime):
            parsed = value
        else:
            # An unencoded "+01:00" offset arrives as " 01:00" in a query string.
            text = _SPACE_OFFSET_RE.sub(r"+\1", str(value).strip())
            try:
                day = parse_iso_date(text)
                found: datetime | None
                if day is not None:
                    found = datetime.combine(day, time.min)
                    if self.end:
                        found += timedelta(days=1)
                else:
                    found = parse_iso_datetime(text)
                if found is None:
                    raise ValueError(text)
                parsed = found
            except (ValueError, OverflowError, TypeError):
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
        return parsed.astimezone(UTC)


class StrictBooleanField(forms.Field):
    default_error_messages = {"invalid": gettext_lazy("Enter true or false.")}
    TRUE = frozenset({"true", "1", "yes", "on"})
    FALSE = frozenset({"false", "0", "no", "off"})

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class TokenListField(forms.CharField):
    """Comma-separated names (tags, types, detectors), each validated by ``pattern``."""

    def __init__(self, *args: Any, pattern: re.Pattern = TOKEN_RE, **kwargs: Any) -> None:
        self.pattern = pattern
        super().__init__(*args, **kwargs)

    # A form field may clean to any type; django-stubs types CharField.to_python as str.
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        value = super().to_python(value)
        if not value:
            return []
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if not self.pattern.match(v)]
        if bad:
            raise ValidationError(
                _("Invalid value: %(value)r.") % {"value": bad[0]}, code="invalid"
            )
        return items


class UserPkField(forms.CharField):
    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if not value:
            return None
        try:
            pk = get_user_model()._meta.pk.to_python(value)
        except ValidationError:
            raise ValidationError(_("Enter a valid user id."), code="invalid") from None
        if isinstance(pk, int) and not -(2**63) <= pk < 2**63:
            # No database column holds it; SQLite would raise instead of matching nothing.
            raise ValidationError(_("Enter a valid user id."), code="invalid")
        return pk


class PatternField(forms.CharField):
    """Text matching ``pattern``; ``message`` explains the expected form."""

    def __init__(self, *args: Any, pattern: re.Pattern, message: str, **kwargs: Any) -> None:
        self.pattern, self.message = pattern, message
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str:
        value = (super().to_python(value) or "").strip()
        if value and not self.pattern.match(value):
            raise ValidationError(self.message, code="invalid")
        return value


class ActivityFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", _("Must not be before since."))
        return data


class StableOrderingFilter(django_filters.OrderingFilter):
    """Ordering with a unique tie-breaker so pages stay stable under equal sort keys."""

    def filter(self, qs: Any, value: Any) -> Any:
        qs = super().filter(qs, value)
        if value:
            qs = qs.order_by(*qs.query.order_by, "-id")
        return qs


class StatusClassField(forms.CharField):
    def to_python(self, value: Any) -> int | None:  # type: ignore[override]  # see TokenListField
        value = super().to_python(value)
        if not value:
            return None
        match = re.fullmatch(r"([1-5])xx", value.strip().lower())
        if not match:
            raise ValidationError(_("Enter a status class such as 2xx or 4xx."), code="invalid")
        return int(match.group(1))


# --- filters ----------------------------------------------------------------------------


class _Filter(django_filters.Filter):
    """A filter with a custom form field whose ``method`` does the query."""


def _filter(field_class: type, method: str, help_text: str, **field_kwargs: Any) -> _Filter:
    f = _Filter(method=method, help_text=help_text, **field_kwargs)
    f.field_class = field_class
    return f


class ActivityFilter(django_filters.FilterSet):
    type = _filter(
        TokenListField,
        "filter_type",
        "Activity type code(s), comma-separated (any).",
        pattern=TYPE_RE,
    )
    user = _filter(UserPkField, "filter_user", "User primary key.")
    username = django_filters.CharFilter(field_name="username", help_text="Exact username.")
    ip_address = _filter(
        IPOrNetworkField, "filter_ip", "IP address, or a CIDR network (IPv4/IPv6) like 10.0.0.0/8."
    )
    country = _filter(
        PatternField,
        "filter_country",
        "ISO 3166-1 alpha-2 country code.",
        pattern=COUNTRY_RE,
        message=gettext_lazy("Enter a two-letter country code."),
    )
    city = django_filters.CharFilter(
        field_name="city", lookup_expr="iexact", help_text="City (case-insensitive)."
    )
    asn = _filter(
        forms.IntegerField,
        "filter_asn",
        "Autonomous system number.",
        min_value=0,
        max_value=2**32 - 1,
    )
    flagged = _filter(StrictBooleanField, "filter_flagged", "true or false.")
    tags = _filter(
        TokenListField, "filter_tags_any", "Activities with any of these tags (comma-separated)."
    )
    tags_all = _filter(
        TokenListField, "filter_tags_all", "Activities with all of these tags (comma-separated)."
    )
    status = _filter(
        forms.IntegerField, "filter_status", "HTTP status code.", min_value=100, max_value=599
    )
    status_class = _filter(
        StatusClassField, "filter_status_class", "Status class: 1xx, 2xx, 3xx, 4xx or 5xx."
    )
    method = _filter(
        PatternField,
        "filter_method",
        "HTTP method.",
        pattern=METHOD_RE,
        message=gettext_lazy("Enter an HTTP method such as GET or POST."),
    )
    endpoint = django_filters.CharFilter(field_name="endpoint", help_text="Exact endpoint path.")
    endpoint_prefix = django_filters.CharFilter(
        field_name="endpoint", lookup_expr="startswith", help_text="Endpoint path prefix."
    )
    outcome = django_filters.ChoiceFilter(
        field_name="outcome",
        choices=[(SUCCESS, SUCCESS), (FAILURE, FAILURE)],
        help_text="Outcome: success or failure (a wrong password answered 200 is a failure).",
    )
    review_status = django_filters.ChoiceFilter(
        field_name="review_status", choices=ReviewStatus.choices, help_text="Review status."
    )
    severity = django_filters.ChoiceFilter(
        field_name="severity",
        choices=[c for c in Severity.choices if c[0]],
        help_text="Severity: low, medium, high or critical.",
    )
    duration_min = django_filters.NumberFilter(
        field_name="duration", lookup_expr="gte", help_text="Minimum duration (ms)."
    )
    duration_max = django_filters.NumberFilter(
        field_name="duration", lookup_expr="lte", help_text="Maximum duration (ms)."
    )
    since = _filter(
        DateOrDateTimeField, "filter_since", "From this ISO date/date-time (inclusive)."
    )
    until = _filter(
        DateOrDateTimeField,
        "filter_until",
        "Up to this ISO date-time (exclusive); a bare date includes that whole day.",
        end=True,
    )
    search = _filter(
        forms.CharField, "filter_search", "Free text over username, IP address and endpoint."
    )
    detector = _filter(
        TokenListField,
        "filter_detector",
        "Activities with a finding from this detector (comma-separated: any).",
    )
    ordering = StableOrderingFilter(
        fields=(("timestamp", "timestamp"), ("duration", "duration"), ("risk_score", "risk_score")),
        help_text="timestamp, duration or risk_score; prefix with - for descending.",
    )

    class Meta:
        model = Activity
        fields: list[str] = []
        form = ActivityFilterForm

    # Parameters that are not a narrowing of the data (for the stats rollup decision).
    WINDOW_PARAMS = frozenset({"since", "until"})

    def filter_type(self, qs, name, value):
        return qs.filter(type__in=value) if value else qs

    def filter_user(self, qs, name, value):
        return qs if value is None else qs.filter(user_id=value)

    def filter_ip(self, qs, name, value):
        if value is None:
            return qs
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return filter_network(qs, value)
        return qs.filter(ip_address=str(value))

    def filter_country(self, qs, name, value):
        return qs.filter(country=value.upper()) if value else qs

    def filter_asn(self, qs, name, value):
        return qs if value is None else qs.filter(asn=value)

    def filter_flagged(self, qs, name, value):
        return qs if value is None else qs.filter(flagged=value)

    def filter_tags_any(self, qs, name, value):
        return qs.with_tags(value, match="any") if value else qs

    def filter_tags_all(self, qs, name, value):
        return qs.with_tags(value, match="all") if value else qs

    def filter_status(self, qs, name, value):
        return qs if value is None else qs.filter(status=value)

    def filter_status_class(self, qs, name, value):
        if value is None:
            return qs
        return qs.filter(status__gte=value * 100, status__lt=(value + 1) * 100)

    def filter_method(self, qs, name, value):
        return qs.filter(method=value.upper()) if value else qs

    def filter_since(self, qs, name, value):
        return qs if value is None else qs.filter(timestamp__gte=value)

    def filter_until(self, qs, name, value):
        return qs if value is None else qs.filter(timestamp__lt=value)

    def filter_search(self, qs, name, value):
        value = (value or "").strip()
        if not value:
            return qs
        q = Q(username__icontains=value) | Q(endpoint__icontains=value)
        try:
            q |= Q(ip_address=str(ipaddress.ip_address(value)))
        except ValueError:
            if re.fullmatch(r"[0-9a-fA-F.:]+", value):
                q |= Q(ip_address__startswith=value.lower())
        return qs.filter(q)

    def filter_detector(self, qs, name, value):
        if not value:
            return qs
        return qs.filter(
            Exists(Finding.objects.filter(activity_id=OuterRef("pk"), detector__in=value))
        )

    @property
    def narrows(self) -> bool:
        """Whether any filter other than the time window is in effect."""
        data = self.form.cleaned_data if self.form.is_valid() else {}
        return any(
            value not in (None, "", [], ())
            for name, value in data.items()
            if name not in self.WINDOW_PARAMS and name != "ordering"
        )
