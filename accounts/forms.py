import django_filters
from django import forms

from accounts.models import AuditEvent
from portal.filters import FilterSet, TextFilter


class TokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, e.g. “nightly backup script”.",
    )


def _recorded(field: str):
    """Choices for a filter: the values the audit trail actually holds, read per request."""

    def choices():
        values = AuditEvent.objects.order_by(field).values_list(field, flat=True).distinct()
        return [(value, value) for value in values]

    return choices


class DateInput(forms.DateInput):
    input_type = "date"


class AuditFilter(FilterSet):
    actor = TextFilter(field_name="actor_name", lookup_expr="iexact", label="Actor (user name)")
    action = django_filters.ChoiceFilter(choices=_recorded("action"), empty_label="Any")
    object_type = django_filters.ChoiceFilter(
        choices=_recorded("object_type"), empty_label="Any", label="Object type"
    )
    date_from = django_filters.DateFilter(
        field_name="at", lookup_expr="date__gte", label="From (date)", widget=DateInput
    )
    date_to = django_filters.DateFilter(
        field_name="at", lookup_expr="date__lte", label="To (date)", widget=DateInput
    )

    class Meta:
        model = AuditEvent
        fields = []
