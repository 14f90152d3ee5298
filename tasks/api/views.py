"""Jobs are started by the operation endpoints (POST /hosts/{id}/check/, /mirrors/{id}/join/,
...); here they are read, cancelled and retried."""

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.permissions import MirrorScoped
from accounts.roles import OPERATOR
from members.access import check_may_run
from portal.filters import FilterSet
from tasks import services
from tasks.api.serializers import JobSerializer
from tasks.models import Job


class JobFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=Job.STATES)

    class Meta:
        model = Job
        fields = ["kind", "mirror", "member", "target_type", "target_id", "requested_by"]


class JobViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    queryset = Job.objects.select_related("requested_by")
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "state"]
    action_roles = {"retry": OPERATOR, "cancel": OPERATOR}

    @extend_schema(
        request=None, responses={202: OpenApiResponse(JobSerializer, description="The new job.")}
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Run a failed or cancelled job again, as a new job with the same request."""
        job = self.get_object()
        # a retry runs the same request again: it needs what the request needed
        check_may_run(request.user, job.kind, job.mirror_id, job.member)
        job = services.retry_job(request.user, job)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job, or stop a running one at its next wait."""
        return Response(JobSerializer(services.cancel_job(request.user, self.get_object())).data)
