"""The benchmarked views: a trivial Django view and a trivial DRF view, each untracked, with
``@track`` (synchronous write) and with ``@track(async_log=True)``."""

from django.http import HttpResponse
from rest_framework.decorators import api_view
from rest_framework.response import Response


def plain(request):
    return HttpResponse("ok")


@api_view(["GET"])
def drf(request):
    return Response({"ok": True})


def tracked_views():
    """The tracked variants, only when the tracking app is installed in this variant."""
    from tracking.capture.decorators import track

    return {
        "plain-sync": track(activity_type="API")(plain),
        "plain-async": track(activity_type="API", async_log=True)(plain),
        "drf-sync": track(activity_type="API")(drf),
        "drf-async": track(activity_type="API", async_log=True)(drf),
    }
