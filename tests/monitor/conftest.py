"""The portal served as in production, over ASGI with its websockets: uvicorn on a thread of the
test process, so it shares the test database and the in-memory channel layer."""

import socket
import threading
import time

import pytest

from tests.jobs.conftest import celery_worker  # noqa: F401 - fixture
from tests.monitor.live_cluster import (  # noqa: F401
    collector,
    live_cluster,
    live_portal,
    shared_live_cluster,
)


class AsgiServer:
    def __init__(self):
        import uvicorn
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
        from django.core.asgi import get_asgi_application

        from portal.routing import build_application

        app = build_application(ASGIStaticFilesHandler(get_asgi_application()))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            ws="auto",
            ws_max_size=65536,
            http="portal.listener:LimitedHttpProtocol",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # the tests make users by the handful; the production hasher would spend seconds on them
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def asgi_server(transactional_db):
    server = AsgiServer().start()
    yield server
    server.stop()


def session_cookie(client_user) -> dict:
    """A Django session for `client_user`, as a cookie a browser or websocket client sends."""
    from django.test import Client

    client = Client()
    client.force_login(client_user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value}
