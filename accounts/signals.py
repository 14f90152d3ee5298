"""Sent by accounts.services once a change to a user's roles is committed; the live monitor
listens (monitor/apps.py), so an open socket shows only what the user may still see. A signal
because the monitor sits above accounts: accounts cannot call it."""

from django.dispatch import Signal

roles_changed = Signal()  # sender=User, user_id=<int>
