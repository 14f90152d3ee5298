from django.urls import path

from monitor import views

urlpatterns = [
    path("mirrors/<str:name>/monitor/", views.mirror_monitor, name="mirror-monitor"),
    path("timeline/", views.timeline, name="timeline"),
]

# Prometheus' scrape (monitor/metrics.py, docs/monitor-api.md)
from monitor import metrics  # noqa: E402

urlpatterns += [path("metrics", metrics.metrics, name="metrics")]

# alerts (monitor/alert_views.py, docs/monitor-alerts.md)
from monitor import alert_views  # noqa: E402

urlpatterns += [
    path("alerts/", alert_views.alert_list, name="alert-list"),
    path("alerts/<int:pk>/acknowledge/", alert_views.alert_acknowledge, name="alert-acknowledge"),
]
