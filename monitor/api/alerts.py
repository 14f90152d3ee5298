"""Alerts over REST (docs/monitor-alerts.md): read by viewers, acknowledged by operators.

The rules open and resolve alerts (monitor/alerts.py); nothing here creates or edits one, so
the viewset is read-only but for its `acknowledge` action.
"""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.permissions import MirrorScoped
from accounts.roles import OPERATOR
from monitor.alerts import acknowledge_alert
from monitor.api.serializers import AlertSerializer
from monitor.models import Alert
from portal.filters import FilterSet, TextFilter


class AlertFilter(FilterSet):
    mirror = TextFilter(method="filter_mirror", help_text="The mirror's name, in any case.")
    rule = django_filters.ChoiceFilter(choices=Alert.RULES)
    open = django_filters.BooleanFilter(
        field_name="resolved_at",
        lookup_expr="isnull",
        help_text="true: open alerts only; false: resolved ones only.",
    )

    class Meta:
        model = Alert
        fields = ["mirror", "rule", "open"]

    def filter_mirror(self, queryset, name, value):
        # names are stored uppercase (members/rules.py)
        return queryset.filter(mirror__name=value.upper())


class AlertViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    """What the monitor's rules found: open alerts and resolved ones, newest first."""

    queryset = Alert.objects.select_related("mirror", "acknowledged_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    ordering_fields = ["opened_at", "resolved_at"]
    action_roles = {"acknowledge": OPERATOR}

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Say that someone looks after this alert; an alert acknowledged already is a 409."""
        alert = acknowledge_alert(request.user, self.get_object())
        return Response(AlertSerializer(alert).data)
