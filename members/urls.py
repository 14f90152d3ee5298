from django.urls import path

from members import failover_views, views

urlpatterns = [
    path("", views.mirror_list, name="mirror-list"),
    path("mirrors/<str:name>/", views.mirror_detail, name="mirror-detail"),
    path("mirrors/<str:name>/refresh/", views.refresh_mirror, name="mirror-refresh"),
    path("mirrors/<str:name>/settings/", views.edit_settings, name="mirror-settings"),
    path("mirrors/<str:name>/join/", views.join_mirror, name="mirror-join"),
    path("mirrors/<str:name>/databases/new/", views.create_database, name="database-create"),
    path("mirrors/<str:name>/tls-off/", views.turn_tls_off, name="mirror-tls-off"),
    path("mirrors/<str:name>/remove/", views.remove_mirror, name="mirror-remove"),
    path("mirrors/<str:name>/forget/", views.forget_mirror, name="mirror-forget"),
    path(
        "mirrors/<str:name>/members/<int:pk>/authorize/",
        views.authorize_member,
        name="member-authorize",
    ),
    path("mirrors/<str:name>/members/<int:pk>/reject/", views.reject_member, name="member-reject"),
    path("mirrors/<str:name>/members/<int:pk>/remove/", views.remove_member, name="member-remove"),
    path(
        "mirrors/<str:name>/members/<int:pk>/addresses/",
        views.member_addresses,
        name="member-addresses",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/databases/",
        views.act_on_copies,
        name="member-copies",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/databases/remove/",
        views.remove_copies,
        name="copies-remove",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/",
        views.app_credential_list,
        name="app-credentials",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/new/",
        views.create_app_credential,
        name="app-credential-create",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/read/",
        views.read_app_credentials,
        name="app-credentials-read",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/revoke/",
        views.revoke_app_credential,
        name="app-credential-revoke",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/jobs/<int:job>/",
        views.app_credential_job,
        name="app-credential-job",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/jobs/<int:job>/secret/",
        views.reveal_app_credential,
        name="app-credential-secret",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/force-primary/",
        failover_views.force_primary,
        name="member-force-primary",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/force-primary/preview/",
        failover_views.preview_force_primary,
        name="member-force-primary-preview",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/promote/",
        failover_views.promote_member,
        name="member-promote",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/demote/",
        failover_views.demote_member,
        name="member-demote",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/<slug:operation>/",
        views.switch_member,
        name="member-switch",
    ),
    path(
        "mirrors/<str:name>/dn-updates/<int:pk>/authorize/",
        views.decide_dn_update,
        {"authorize": True},
        name="dn-update-authorize",
    ),
    path(
        "mirrors/<str:name>/dn-updates/<int:pk>/reject/",
        views.decide_dn_update,
        {"authorize": False},
        name="dn-update-reject",
    ),
    path("hosts/", views.host_list, name="host-list"),
    path("hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/check/", views.check_host, name="host-check"),
]
