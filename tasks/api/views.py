"""Jobs are started by operation endpoints (POST /hosts/{id}/check/); here they are read."""

import django_filters
from rest_framework import viewsets

from portal.filters import FilterSet
from tasks.api.serializers import JobSerializer
from tasks.models import Job


class JobFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=Job.STATES)

    class Meta:
        model = Job
        fields = ["kind", "target_type", "target_id", "requested_by"]


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Job.objects.select_related("requested_by")
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "state"]
