from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal.views import healthz

api_v1 = [
    path("", include("members.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("tasks.api.urls")),
    path("", include("monitor.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="api-docs",
    ),
    path("healthz", healthz, name="healthz"),
    path("", include("accounts.urls")),
    path("", include("tasks.urls")),
    path("", include("members.wizard.urls")),
    path("", include("monitor.urls")),
    path("", include("members.urls")),
]

handler400 = "portal.errors.json_bad_request"
handler404 = "portal.errors.json_not_found"
handler500 = "portal.errors.json_server_error"
