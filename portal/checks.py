"""System checks of the portal's own settings (`manage.py check`; `--deploy` adds the deploy
ones). Production without PORTAL_SECRET_KEYS never gets this far: settings refuse to load
(portal/crypto.py `check_keys`), so every process stops at start-up, not only `check`."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from portal.crypto import DEV_KEY_FILE


@register(Tags.security, deploy=True)
def secret_keys_from_the_environment(app_configs=None, **kwargs):
    """The embedded default's key file is for one machine's demo, not a deployment."""
    if settings.PORTAL_SECRET_KEYS:
        return []
    return [
        Warning(
            "PORTAL_SECRET_KEYS is not set: the agent credentials the portal keeps are encrypted "
            f"with the development key generated into {settings.VAR_DIR / DEV_KEY_FILE}.",
            hint="Set PORTAL_SECRET_KEYS (and DJANGO_SECRET_KEY) for a deployment; "
            "docs/hardening.md, 'Secrets at rest'.",
            id="portal.W001",
        )
    ]
