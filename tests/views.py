"""Views used by the tests (imported as a URLconf by tests/urls.py). Append; don't reorder."""

from django.http import HttpResponse
from django.urls import path


def ok(request):
    return HttpResponse("ok")


urlpatterns = [
    path("ok/", ok, name="t-ok"),
]
