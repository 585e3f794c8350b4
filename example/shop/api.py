"""The shop's DRF API: session or token authentication, recorded with the token's user."""

from __future__ import annotations

from rest_framework import permissions, serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response
from rest_framework.views import APIView

from tracking.capture.decorators import track


class OrderSerializer(serializers.Serializer):
    product = serializers.IntegerField(min_value=1)
    qty = serializers.IntegerField(min_value=1, max_value=100, default=1)


@track(activity_type="API")
class OrderListView(APIView):
    """``GET`` lists the user's (sample) orders, ``POST`` places one."""

    permission_classes = [permissions.IsAuthenticated]

    def get(self, request):
        name = request.user.get_username()
        orders = [{"id": i, "product": 100 + i, "qty": 1, "owner": name} for i in range(1, 4)]
        return Response({"results": orders})

    def post(self, request):
        serializer = OrderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response({"id": 4, **serializer.validated_data}, status=201)


@track(activity_type="API")
@api_view(["GET"])
@permission_classes([permissions.IsAuthenticated])
def profile(request):
    user = request.user
    return Response({"username": user.get_username(), "email": user.email, "staff": user.is_staff})


# POST username/password → {"token": ...}; the password is redacted from the record.
obtain_token = track(activity_type="AUTH")(ObtainAuthToken.as_view())
