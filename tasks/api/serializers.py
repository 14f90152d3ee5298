from rest_framework import serializers

from tasks.models import Job


class JobLogLineSerializer(serializers.Serializer):
    at = serializers.CharField(help_text="ISO 8601 time the line was written.")
    message = serializers.CharField()


class JobSerializer(serializers.ModelSerializer):
    requested_by_name = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    log = JobLogLineSerializer(many=True, read_only=True)
    result = serializers.JSONField(read_only=True, allow_null=True)
    params = serializers.SerializerMethodField(
        help_text="What the job was asked to do; sealed secrets it holds for a moment are left out."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "target_type",
            "target_id",
            "target_repr",
            "mirror",
            "member",
            "params",
            "state",
            "progress",
            "log",
            "error",
            "result",
            "attempts",
            "retry_of",
            "cancel_requested",
            "requested_by",
            "requested_by_name",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_params(self, job: Job) -> dict:
        # a new application credential's secret waits sealed here for its one reveal
        # (members/operations/app_credentials.py): not even sealed in an answer
        return {k: v for k, v in (job.params or {}).items() if not k.endswith("_sealed")}
