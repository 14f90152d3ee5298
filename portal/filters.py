"""The base of every API filter set: text filters take at most MAX_FILTER_LENGTH characters.

A longer value matches nothing anyway, and SQLite refuses a LIKE pattern of tens of thousands
of characters with an error ("pattern too complex") that would otherwise be a 500; here it is a
400 with the usual error shape.
"""

from datetime import UTC

import django_filters
from django import forms
from django.db import models
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS

MAX_FILTER_LENGTH = 1000


def in_utc(value, message: str = "The date/time is out of range."):
    """A date/time filter's value as the database takes it: in UTC, because PostgreSQL refuses
    offsets past ±15:59 (Python allows ±23:59), and year 1 at UTC+14 does not exist in UTC."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise forms.ValidationError(message, code="invalid") from None


class TextFilter(django_filters.CharFilter):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_FILTER_LENGTH)
        super().__init__(**kwargs)


class FilterSet(django_filters.FilterSet):
    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.CharField: {"filter_class": TextFilter},
        models.TextField: {"filter_class": TextFilter},
        models.GenericIPAddressField: {"filter_class": TextFilter},
    }
