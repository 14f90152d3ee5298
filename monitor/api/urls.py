from django.urls import path

urlpatterns = []

# the live monitor's reads (monitor/api/views.py, docs/monitor-api.md)
from monitor.api import views as monitor_views  # noqa: E402

urlpatterns += [
    path(
        "mirrors/<str:id>/status/", monitor_views.MirrorStatusView.as_view(), name="mirror-status"
    ),
    path(
        "mirrors/<str:id>/samples/",
        monitor_views.MirrorSamplesView.as_view(),
        name="mirror-samples",
    ),
    path("events/", monitor_views.EventList.as_view(), name="event-list"),
]

# alerts (monitor/api/alerts.py, docs/monitor-alerts.md)
from rest_framework.routers import SimpleRouter  # noqa: E402

from monitor.api.alerts import AlertViewSet  # noqa: E402

router = SimpleRouter()
router.register("alerts", AlertViewSet, basename="api-alert")
urlpatterns += router.urls
