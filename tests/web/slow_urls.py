"""The portal's URLs and one slow page, for a request pipelined behind a slow answer."""

import time

from django.http import HttpResponse
from django.urls import include, path


def slow(request):
    time.sleep(float(request.GET.get("s", "1")))
    return HttpResponse("slow")


urlpatterns = [path("slow/", slow), path("", include("portal.urls"))]
