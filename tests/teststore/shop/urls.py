"""URLs: our operations endpoints (shop/views.py) before oscarapi's, then Oscar itself."""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    # the storefront and dashboard templates reverse 'set_language' (PLATFORMS.md P4)
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/admin/orders/<int:pk>/status/", views.OrderStatusView.as_view()),
    path("api/ops/orders/", views.OpsOrderList.as_view()),
    path("api/ops/orders/<int:pk>/notes/", views.OrderNotesView.as_view()),
    path("api/ops/orders/<int:pk>/fulfil/", views.FulfilView.as_view()),
    path("api/ops/stockrecords/<int:pk>/adjust/", views.StockAdjustView.as_view()),
    path("api/", include("oscarapi.urls")),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
