from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness for load balancers: the process serves and its database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
