"""The live pages: the Mirror Monitor of one mirror (guide §5.1.1), kept current over a
websocket; the fleet overview is the Mirrors page."""

from django.shortcuts import get_object_or_404, render

from accounts.decorators import role_required
from accounts.roles import VIEWER
from members.models import Mirror
from monitor.api.serializers import mirror_status


@role_required(VIEWER)
def mirror_monitor(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    return render(
        request, "monitor/mirror_monitor.html", {"mirror": mirror, "status": mirror_status(mirror)}
    )
