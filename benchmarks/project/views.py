"""The benchmarked views: a trivial Django view and a trivial DRF view, each untracked, with
``@track`` (synchronous write) and with ``@track(async_log=True)``."""

import os

from django.http import HttpResponse
from rest_framework.decorators import api_view
from rest_framework.response import Response


def plain(request):
    return HttpResponse("ok")


def marked(request, marker):
    """The plain view under a path of its own per request (``marked/<marker>/``), so a
    benchmark can match each acknowledged request with its stored row. The body is the
    serving process's id (benchmarks/kill.py: was it served by the worker it killed?)."""
    return HttpResponse(str(os.getpid()))


@api_view(["GET"])
def drf(request):
    return Response({"ok": True})


def tracked_views():
    """The tracked variants, only when the tracking app is installed in this variant."""
    from tracking.capture.decorators import track

    return {
        "marked-sync/<str:marker>": track(activity_type="API")(marked),
        "marked-async/<str:marker>": track(activity_type="API", async_log=True)(marked),
        "plain-sync": track(activity_type="API")(plain),
        "plain-async": track(activity_type="API", async_log=True)(plain),
        "drf-sync": track(activity_type="API")(drf),
        "drf-async": track(activity_type="API", async_log=True)(drf),
    }
