"""Websocket routes (all under /ws/)."""

from django.urls import path

from monitor import consumers

websocket_urlpatterns = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/mirrors/<str:name>/", consumers.MirrorConsumer.as_asgi()),
]
