"""Agent credentials encrypted at rest (docs/hardening.md, "Secrets at rest").

Three steps so that no step reads a column through the wrong field: the column becomes plain
text (a token is longer than 256 characters), every credential is sealed as `fernet:<token>`
with the first key of PORTAL_SECRET_KEYS, then the field becomes the encrypted one (same text
column, no SQL). Backwards, the tokens are opened again and the column is a varchar(256) again.
"""

from cryptography.fernet import InvalidToken
from django.db import migrations, models

import portal.crypto


def seal_credentials(apps, schema_editor):
    Host = apps.get_model("members", "Host")
    for pk, stored in Host.objects.exclude(credential="").values_list("pk", "credential"):
        if not stored.startswith(portal.crypto.PREFIX):
            Host.objects.filter(pk=pk).update(credential=portal.crypto.seal(stored))


def open_credentials(apps, schema_editor):
    Host = apps.get_model("members", "Host")
    rows = Host.objects.filter(credential__startswith=portal.crypto.PREFIX)
    for pk, name, stored in rows.values_list("pk", "name", "credential"):
        try:
            plain = portal.crypto.unseal(stored)
        except InvalidToken:
            raise portal.crypto.SecretUnreadable(
                f"Host {name}: its stored credential cannot be decrypted with any key in "
                "PORTAL_SECRET_KEYS, so it cannot be turned back into plain text."
            ) from None
        Host.objects.filter(pk=pk).update(credential=plain)


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0005_mirror_drafts"),
    ]

    operations = [
        migrations.AlterField(
            model_name="host",
            name="credential",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(seal_credentials, open_credentials, elidable=False),
        migrations.AlterField(
            model_name="host",
            name="credential",
            field=portal.crypto.EncryptedCharField(blank=True, max_length=256),
        ),
    ]
