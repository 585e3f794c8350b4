from tracking.activity_types import BUILTIN_TYPES, all_types, type_choices, type_label
from tracking.models import Activity


def test_builtin_types_and_labels():
    assert type_label("AUTH") == "Authentication"
    assert type_label("ACCOUNT") == "Account change"
    assert list(BUILTIN_TYPES) == ["AUTH", "PAYMENT", "ACCOUNT", "DATA", "API", "ADMIN", "OTHER"]


def test_projects_add_types_through_a_setting(settings):
    settings.TRACKING_ACTIVITY_TYPES = {"REFUND": "Refund"}
    assert all_types()["REFUND"] == "Refund"
    assert ("REFUND", "Refund") in type_choices()
    assert Activity(type="REFUND").type_display == "Refund"
    settings.TRACKING_ACTIVITY_TYPES = {}
    assert "REFUND" not in all_types()
