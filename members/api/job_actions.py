"""What every API operation shares: a POST action that starts a job and answers 202 with it,
documented with its body (members/api/views.py, members/api/failover.py)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from tasks.api.serializers import JobSerializer

ACCEPTED = {202: OpenApiResponse(JobSerializer, description="The job, queued.")}


def accepted(job) -> Response:
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def operation(body=None, *, detail=True, url_path=None, responses=None):
    """A POST action that starts a job: documented with its body and the 202 answer."""

    def wrap(func):
        # @action first: it replaces the function's kwargs, where extend_schema keeps the schema
        routed = action(detail=detail, methods=["post"], url_path=url_path)(func)
        return extend_schema(request=body, responses=responses or ACCEPTED)(routed)

    return wrap


def body(request, serializer_class) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
