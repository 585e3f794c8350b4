from django.urls import path

from . import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.login_view, name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("payments/", views.payment_view, name="payment"),
    path("account/password/", views.password_change_view, name="password-change"),
    path("reports/<slug:name>/export/", views.report_export_view, name="report-export"),
    path("api/v1/token/", api.obtain_token, name="api-token"),
    path("api/v1/orders/", api.OrderListView.as_view(), name="api-orders"),
    path("api/v1/profile/", api.profile, name="api-profile"),
]
