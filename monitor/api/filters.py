"""Query parameters of the monitor's read endpoints: the history's filters and the charts' window.

Bad values are a 400 in the API's one error shape (portal/errors.py): django-filter reports an
invalid filter set as a ValidationError, and so does the samples query's serializer.
"""

from datetime import UTC

import django_filters
from rest_framework import serializers

from monitor.models import Event
from portal.filters import FilterSet, TextFilter, in_utc

OUT_OF_RANGE = "The date/time is out of range."


class _AwareDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 date/time as the database takes it (portal/filters.py in_utc)."""

    def to_python(self, value):
        return in_utc(super().to_python(value), OUT_OF_RANGE)


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _AwareDateTimeField


class EventFilter(FilterSet):
    """The history: by mirror and member name (any case), kind, time window and job."""

    mirror = TextFilter(method="filter_name", help_text="The mirror's name, in any case.")
    member = TextFilter(method="filter_name", help_text="The member's name, in any case.")
    kind = django_filters.ChoiceFilter(choices=Event.KINDS)
    since = DateTimeFilter(
        field_name="at", lookup_expr="gte", help_text="Events at or after this ISO 8601 time."
    )
    until = DateTimeFilter(
        field_name="at", lookup_expr="lte", help_text="Events at or before this ISO 8601 time."
    )

    class Meta:
        model = Event
        fields = ["mirror", "member", "kind", "since", "until", "job"]

    def filter_name(self, queryset, name, value):
        # names are stored uppercase (members/rules.py), so an exact match keeps the index
        field = {"mirror": "mirror_name", "member": "member_name"}[name]
        return queryset.filter(**{field: value.upper()})


class SamplesQuery(serializers.Serializer):
    """?since= for the charts: only samples taken after it (a page polling for more sends the
    last `at` it holds); never earlier than the samples kept (MONITOR_SAMPLE_KEEP_S)."""

    since = serializers.DateTimeField(required=False)

    def validate_since(self, value):
        try:
            value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise serializers.ValidationError(OUT_OF_RANGE, code="invalid") from None
        return value
