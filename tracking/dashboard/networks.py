"""The organisation-networks page: configured, learned and taught networks; revoking one.

Configured networks (``TRACKING_TRUSTED_NETWORKS``) are shown read-only (they change with the
settings); learned and review-taught ones (``OrganisationNetwork``) can be revoked by a user
holding ``tracking.review_activity``, with a plain POST form (CSRF-protected, no script).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST, require_safe

from detectors.orgnetworks import parse_trusted
from tracking.conf import tracking_settings
from tracking.dashboard.access import staff_page
from tracking.detection import orgnetworks
from tracking.models import OrganisationNetwork

REVIEW_PERMISSION = "tracking.review_activity"


def _configured() -> list[dict[str, str]]:
    try:
        trusted = parse_trusted(tracking_settings.TRUSTED_NETWORKS)
    except ValueError as exc:
        return [{"name": str(_("invalid setting")), "network": str(exc)}]
    rows = [{"name": name, "network": str(network)} for network, name in trusted.cidrs]
    rows += [{"name": name, "network": f"AS{asn}"} for asn, name in trusted.asns.items()]
    return rows


@staff_page
@require_safe
def networks(request: HttpRequest) -> HttpResponse:
    rows = list(OrganisationNetwork.objects.all()[:500])
    return render(
        request,
        "tracking/dashboard/networks.html",
        {
            "configured": _configured(),
            "active": [r for r in rows if r.revoked_at is None],
            "revoked": [r for r in rows if r.revoked_at is not None],
            "can_review": request.user.has_perm(REVIEW_PERMISSION),
        },
    )


@staff_page
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm(REVIEW_PERMISSION):
        return HttpResponseForbidden(_("You may not revoke organisation networks."))
    row = get_object_or_404(OrganisationNetwork, pk=pk)
    orgnetworks.revoke(row, by=request.user)
    return redirect("tracking:dashboard:networks")
