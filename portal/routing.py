"""The ASGI application: HTTP to Django, websockets (only under /ws/) to the live monitor's
consumers behind the session and an Origin check. Built here without side effects, so tests
serve exactly what portal/asgi.py serves."""

import logging

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings

from monitor.routing import websocket_urlpatterns

log = logging.getLogger("monitor.consumers")


class LoggedOriginValidator(OriginValidator):
    """Channels' check of the Origin header against ALLOWED_HOSTS (a page of another site may
    not open our websockets with the viewer's cookie), logging each refusal."""

    def valid_origin(self, parsed_origin):
        if super().valid_origin(parsed_origin):
            return True
        origin = parsed_origin.geturl() if parsed_origin is not None else "none"
        log.warning("websocket refused: origin %s is not one of ALLOWED_HOSTS", origin)
        return False


def build_application(http_app):
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": LoggedOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed
            ),
        }
    )
