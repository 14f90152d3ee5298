import os
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from accounts import services


class Command(BaseCommand):
    help = "Create the demo admin once and print how to log in (make run calls this)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("PORTAL_ADMIN_USER", "admin"))

    def handle(self, *args, username, **options):
        password_file = settings.VAR_DIR / "demo-admin-password"
        given = os.environ.get("PORTAL_ADMIN_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is None:
            password = given or secrets.token_urlsafe(12)
            user = services.create_user(None, username=username, password=password, role="admin")
            if not given:
                password_file.parent.mkdir(parents=True, exist_ok=True)
                password_file.write_text(password + "\n")
                password_file.chmod(0o600)
        elif given:
            user.set_password(given)
            user.save(update_fields=["password"])
            password = given
        elif password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = "(unchanged; set PORTAL_ADMIN_PASSWORD to reset it)"
        self.stdout.write(self.style.SUCCESS(f"Demo admin: user {username!r}, password {password}"))
