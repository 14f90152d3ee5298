from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"

    def ready(self):
        from accounts.signals import roles_changed
        from monitor import publish

        roles_changed.connect(publish.tell_user, dispatch_uid="monitor.tell_user")
