"""Query-string filters for the configuration endpoints (django-filter).

Unknown parameters are ignored; a malformed value (a date that is not one, an id that is not a
number) is a 400 with the usual error shape, never a 500.
"""

import django_filters
from django import forms

from members.models import (
    DatabaseCopy,
    Host,
    Instance,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from members.rules import MEMBER_TYPES
from portal.filters import FilterSet, TextFilter, in_utc


class _BoundedDateTimeField(forms.DateTimeField):
    """A date-time the database accepts: sent in UTC, because PostgreSQL refuses offsets past
    ±15:59 (Python allows ±23:59), and year 1 at UTC+14 does not exist in UTC at all."""

    def to_python(self, value):
        return in_utc(super().to_python(value), "Date out of range.")


class DateTimeFilter(django_filters.DateTimeFilter):
    field_class = _BoundedDateTimeField


class IdFilter(django_filters.Filter):
    """An id across a relation; bounded, because a number past 64 bits overflows the database
    driver instead of simply matching nothing."""

    field_class = forms.IntegerField

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(**kwargs)


class NameFilter(TextFilter):
    """Names are stored uppercase; match them whatever case the caller uses."""

    def __init__(self, **kwargs):
        kwargs.setdefault("lookup_expr", "iexact")
        super().__init__(**kwargs)


class MirrorFilter(FilterSet):
    name = NameFilter()

    class Meta:
        model = Mirror
        fields = ["requires_tls"]


class HostFilter(FilterSet):
    name = NameFilter()
    address = TextFilter()
    reachable = django_filters.BooleanFilter()

    class Meta:
        model = Host
        fields = ["agent_port"]


class MemberFilter(FilterSet):
    mirror_name = NameFilter(field_name="mirror__name")
    name = NameFilter()
    member_type = django_filters.ChoiceFilter(choices=MEMBER_TYPES)
    authorization = django_filters.ChoiceFilter(choices=Member.AUTHORIZATION)

    class Meta:
        model = Member
        fields = ["mirror", "host"]


class PendingMemberFilter(FilterSet):
    mirror_name = NameFilter(field_name="mirror__name")

    class Meta:
        model = Member
        fields = ["mirror", "host"]


class DNUpdateFilter(FilterSet):
    mirror = IdFilter(field_name="member__mirror")
    state = django_filters.ChoiceFilter(choices=PendingDNUpdate.STATES)

    class Meta:
        model = PendingDNUpdate
        fields = ["member"]


class MirroredDatabaseFilter(FilterSet):
    mirror_name = NameFilter(field_name="mirror__name")
    name = NameFilter()

    class Meta:
        model = MirroredDatabase
        fields = ["mirror", "mount_required_at_startup"]


class DatabaseCopyFilter(FilterSet):
    mirror = IdFilter(field_name="database__mirror")

    class Meta:
        model = DatabaseCopy
        fields = ["database", "member", "status"]


class InstanceFilter(FilterSet):
    name = NameFilter()
    mirror_name = NameFilter()
    member_name = NameFilter()

    class Meta:
        model = Instance
        fields = ["host", "state", "role", "member_type"]
