"""Re-encrypt every secret the portal keeps with the first key of PORTAL_SECRET_KEYS
(MultiFernet.rotate), so the keys after it can be dropped (docs/hardening.md)."""

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import audit
from portal import crypto

ACTOR = "manage.py rotate_secrets"


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (agent credentials) with the first key of "
        "PORTAL_SECRET_KEYS; afterwards the other keys can be removed. All or nothing."
    )

    def handle(self, *args, **options):
        fields = [
            (model, field)
            for model in apps.get_models()
            for field in model._meta.concrete_fields
            if isinstance(field, crypto.EncryptedCharField)
        ]
        rotated, unreadable = 0, []
        with transaction.atomic():
            for model, field in fields:
                rows = model._base_manager.select_for_update().exclude(**{field.attname: ""})
                for obj in rows.order_by("pk"):
                    sealed = obj.__dict__[field.attname]  # as stored: never opened here
                    try:
                        token = crypto.reseal(sealed.token)
                    except InvalidToken:
                        unreadable.append(f"{model._meta.verbose_name} {obj} ({field.name})")
                        continue
                    model._base_manager.filter(pk=obj.pk).update(
                        **{field.attname: crypto.Sealed(token)}
                    )
                    audit.record(
                        ACTOR,
                        f"{model._meta.model_name}.rotate_secrets",
                        obj,
                        after={"reencrypted": [field.name]},
                    )
                    rotated += 1
            if unreadable:
                transaction.set_rollback(True)
        if unreadable:
            raise CommandError(
                f"No key in PORTAL_SECRET_KEYS decrypts the stored secret of "
                f"{', '.join(unreadable)}; nothing was changed. Add the key that encrypted it "
                "(after the new first key) and run this again, or set that secret anew."
            )
        key = "the first key of PORTAL_SECRET_KEYS"
        if not settings.PORTAL_SECRET_KEYS:
            key = f"the development key ({settings.VAR_DIR / crypto.DEV_KEY_FILE})"
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {rotated} secret{'s' * (rotated != 1)} with {key}.")
        )
