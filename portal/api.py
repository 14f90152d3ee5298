"""What every REST endpoint shares: the JSON parser, pagination, the documented error responses
(in the one shape of portal.errors), and a helper for updates. REST_FRAMEWORK in settings points
at these, so viewsets only declare what is their own."""

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser

from portal.crypto import SecretUnreadable


class StrictJSONParser(JSONParser):
    """JSON the rest of the stack can handle: no lone surrogates (they cannot be encoded to UTF-8
    for the database or the response) and no nesting deep enough to exhaust the stack."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON nested too deeply.") from None
        pending = [data]
        while pending:  # iterative: the document may be deep
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise ParseError("JSON strings must be valid Unicode.") from None
        return data


class Pagination(LimitOffsetPagination):
    # Without a cap, ?limit=10**30 reaches the database as a LIMIT it cannot represent.
    max_limit = 1000


# --- The error shape, described for the OpenAPI schema ----------------------------------------
class FieldErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable, e.g. invalid, not_found.")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=FieldErrorSerializer(many=True),
        required=False,
        help_text="Validation errors only: field name to its errors.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_RESPONSES = {
    "400": "Invalid input: see error.fields for each field's code and message.",
    "401": "Not authenticated: log in or send Authorization: Bearer <token>.",
    "403": "Your role does not allow this.",
    "404": "No such object.",
    "409": "The change conflicts with the current state.",
}


def _portal_auto_schema():
    from drf_spectacular.openapi import AutoSchema

    class PortalAutoSchema(AutoSchema):
        """Documents the error responses every endpoint can give, in the one error shape."""

        def _get_response_bodies(self, direction="response"):
            responses = super()._get_response_bodies(direction)
            for code, description in ERROR_RESPONSES.items():
                if code not in responses:
                    body = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                    responses[code] = {**body, "description": description}
            return responses

    return PortalAutoSchema


def __getattr__(name):
    # DRF imports this module's parser and pagination while rest_framework.views is still
    # loading, and drf_spectacular.openapi imports rest_framework.generics: so the schema class
    # is built on first use (DEFAULT_SCHEMA_CLASS), not at import.
    if name == "PortalAutoSchema":
        globals()[name] = _portal_auto_schema()
        return globals()[name]
    raise AttributeError(name)


def changed_fields(serializer) -> dict:
    """The submitted values that differ from the object's, so a PUT that repeats an unchangeable
    field (a mirror's name, a member's mirror) is accepted and only real changes reach the
    service, which refuses changes to what may not change."""
    instance = serializer.instance
    return {
        field: value
        for field, value in serializer.validated_data.items()
        if _current(instance, field) != value
    }


def _current(instance, field: str):
    try:
        return getattr(instance, field, None)
    except SecretUnreadable:  # a stored secret no key opens: what is sent replaces it
        return None


class ChoiceField(serializers.ChoiceField):
    """A choice whose error lists the valid values, so a caller can correct it without the docs."""

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        key = str(data)
        if key not in self.choice_strings_to_values:
            valid = ", ".join(map(str, self.choices))
            raise serializers.ValidationError(
                f'"{data}" is not a valid choice; choose one of: {valid}.', code="invalid_choice"
            )
        return self.choice_strings_to_values[key]
