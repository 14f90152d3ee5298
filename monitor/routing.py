# Websocket routes; the live monitor adds its consumers here.
websocket_urlpatterns = []
