"""Views used by the tests (imported as a URLconf by tests/urls.py). Append; don't reorder."""

from django.http import HttpResponse
from django.urls import path


def ok(request):
    return HttpResponse("ok")


urlpatterns = [
    path("ok/", ok, name="t-ok"),
]


# --- recording (@track) test views -----------------------------------------------------
from django.http import JsonResponse  # noqa: E402
from django.utils.decorators import method_decorator  # noqa: E402
from django.views import View  # noqa: E402
from rest_framework import viewsets  # noqa: E402
from rest_framework.decorators import api_view  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from tracking.capture.decorators import track  # noqa: E402


@track(activity_type="AUTH")
def rec_login(request):
    return JsonResponse({"ok": True})


@track(activity_type="PAYMENT", async_log=True)
def rec_pay(request):
    return JsonResponse({"paid": True})


@track(activity_type="DATA")
def rec_boom(request):
    raise ValueError("boom")


@track(activity_type="DATA")
def rec_status(request, code):
    return HttpResponse("x", status=code)


@track(activity_type="API")
async def rec_async(request):
    return JsonResponse({"async": True})


@track(activity_type="API", async_log=True)
async def rec_async_log(request):
    return JsonResponse({"async": True})


@track(activity_type="ACCOUNT")
class RecClassView(View):
    def get(self, request):
        return HttpResponse("class")


class RecDispatchView(View):
    @method_decorator(track(activity_type="ACCOUNT"))
    def dispatch(self, request, *args, **kwargs):
        return super().dispatch(request, *args, **kwargs)

    def get(self, request):
        return HttpResponse("dispatch")


@track(activity_type="API")
class RecAPIView(APIView):
    def get(self, request):
        return Response({"user": request.user.get_username()})

    def post(self, request):
        return Response({"got": sorted(request.data)}, status=201)


@track(activity_type="API")
class RecViewSet(viewsets.ViewSet):
    def list(self, request):
        return Response([])


@track(activity_type="API")
@api_view(["GET", "POST"])
def rec_api_outer(request):
    return Response({"n": 1})


@api_view(["GET"])
@track(activity_type="API")
def rec_api_inner(request):
    return Response({"n": 2})


urlpatterns += [
    path("rec/login/", rec_login),
    path("rec/pay/", rec_pay),
    path("rec/boom/", rec_boom),
    path("rec/status/<int:code>/", rec_status),
    path("rec/async/", rec_async),
    path("rec/async-log/", rec_async_log),
    path("rec/class/", RecClassView.as_view()),
    path("rec/dispatch/", RecDispatchView.as_view()),
    path("rec/apiview/", RecAPIView.as_view()),
    path("rec/viewset/", RecViewSet.as_view({"get": "list"})),
    path("rec/api-outer/", rec_api_outer),
    path("rec/api-inner/", rec_api_inner),
]


# --- hostile input test views (tests/test_hostile_input.py, test_redaction_properties.py) ---
@track(activity_type="DATA")
def hostile_echo(request, rest=""):
    # Answers with a fixed body: hostile input must never break or reach the response.
    return HttpResponse("ok")


urlpatterns += [
    path("hostile/", hostile_echo),
    path("hostile/<path:rest>", hostile_echo),
]


@track(activity_type="ACCOUNT")
class RecAsyncClassView(View):
    async def get(self, request):
        return HttpResponse("async-class", status=202)


urlpatterns += [path("rec/async-class/", RecAsyncClassView.as_view())]


# --- outcome test views (tests/test_decorators.py) --------------------------------------
from django.contrib.auth import authenticate, login  # noqa: E402


@track(activity_type="AUTH", outcome=lambda request, response: b"error" not in response.content)
def rec_outcome(request):
    return HttpResponse("error: try again" if request.GET.get("fail") else "welcome")


@track(activity_type="AUTH")
def rec_signal_login(request):
    user = authenticate(request, username=request.POST.get("u"), password=request.POST.get("p"))
    if user is None:
        return HttpResponse("no", status=200)
    login(request, user)
    return HttpResponse("yes")


urlpatterns += [
    path("rec/outcome/", rec_outcome),
    path("rec/signal-login/", rec_signal_login),
]
