"""The base of every API filter set: text filters take at most MAX_FILTER_LENGTH characters.

A longer value matches nothing anyway, and SQLite refuses a LIKE pattern of tens of thousands
of characters with an error ("pattern too complex") that would otherwise be a 500; here it is a
400 with the usual error shape.
"""

import django_filters
from django.db import models
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS

MAX_FILTER_LENGTH = 1000


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
