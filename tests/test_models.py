import pytest
from django.db import connection

from tracking.models import Activity


@pytest.mark.django_db
def test_activity_round_trip_encrypts_headers_and_filters_tags():
    a = Activity.objects.create(
        type="AUTH", headers={"User-Agent": "x"}, params={"q": "1"}, tags=["b", "a"]
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT headers, tags FROM tracking_activity WHERE id = %s",
            [a.id.hex if connection.vendor == "sqlite" else a.id],
        )
        raw_headers, raw_tags = cur.fetchone()
    assert raw_headers.startswith("v1:") and "User-Agent" not in raw_headers
    assert raw_tags == ",a,b,"
    b = Activity.objects.get(pk=a.pk)
    assert b.headers == {"User-Agent": "x"}
    assert b.tags == ["a", "b"]
    assert b.type_display == "Authentication"
    assert list(Activity.objects.with_tags(["a"])) == [b]
    assert not Activity.objects.with_tags(["c"]).exists()
    assert Activity.objects.with_tags(["a", "b"], match="all").count() == 1
