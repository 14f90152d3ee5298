from django.urls import path

from monitor import views

urlpatterns = [
    path("mirrors/<str:name>/monitor/", views.mirror_monitor, name="mirror-monitor"),
]
