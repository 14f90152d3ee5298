from django.urls import path

from members import (
    access_views,
    app_credential_views,
    database_views,
    failover_views,
    host_views,
    member_views,
    views,
)

urlpatterns = [
    path("", views.mirror_list, name="mirror-list"),
    path("mirrors/<str:name>/", views.mirror_detail, name="mirror-detail"),
    path("mirrors/<str:name>/refresh/", views.refresh_mirror, name="mirror-refresh"),
    path("mirrors/<str:name>/settings/", views.edit_settings, name="mirror-settings"),
    path("mirrors/<str:name>/access/", access_views.mirror_access, name="mirror-access"),
    path("mirrors/<str:name>/join/", member_views.join_mirror, name="mirror-join"),
    path(
        "mirrors/<str:name>/databases/new/", database_views.create_database, name="database-create"
    ),
    path("mirrors/<str:name>/tls-off/", views.turn_tls_off, name="mirror-tls-off"),
    path("mirrors/<str:name>/remove/", views.remove_mirror, name="mirror-remove"),
    path("mirrors/<str:name>/forget/", views.forget_mirror, name="mirror-forget"),
    path(
        "mirrors/<str:name>/members/<int:pk>/authorize/",
        member_views.authorize_member,
        name="member-authorize",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/reject/",
        member_views.reject_member,
        name="member-reject",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/remove/",
        member_views.remove_member,
        name="member-remove",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/addresses/",
        member_views.member_addresses,
        name="member-addresses",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/databases/",
        database_views.act_on_copies,
        name="member-copies",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/databases/remove/",
        database_views.remove_copies,
        name="copies-remove",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/",
        app_credential_views.app_credential_list,
        name="app-credentials",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/new/",
        app_credential_views.create_app_credential,
        name="app-credential-create",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/read/",
        app_credential_views.read_app_credentials,
        name="app-credentials-read",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/revoke/",
        app_credential_views.revoke_app_credential,
        name="app-credential-revoke",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/jobs/<int:job>/",
        app_credential_views.app_credential_job,
        name="app-credential-job",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/app-credentials/jobs/<int:job>/secret/",
        app_credential_views.reveal_app_credential,
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
        "mirrors/<str:name>/members/<int:pk>/rebuild/",
        failover_views.rebuild_member,
        name="member-rebuild",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/rebuild/preview/",
        failover_views.preview_rebuild_member,
        name="member-rebuild-preview",
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
        "mirrors/<str:name>/members/<int:pk>/promote-to-primary/",
        failover_views.promote_to_primary,
        name="member-promote-to-primary",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/promote-to-primary/preview/",
        failover_views.preview_promote_to_primary,
        name="member-promote-to-primary-preview",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/clear-validated-member/",
        failover_views.clear_validated_member,
        name="member-clear-validated-member",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/<slug:operation>/",
        member_views.switch_member,
        name="member-switch",
    ),
    path(
        "mirrors/<str:name>/dn-updates/<int:pk>/authorize/",
        member_views.decide_dn_update,
        {"authorize": True},
        name="dn-update-authorize",
    ),
    path(
        "mirrors/<str:name>/dn-updates/<int:pk>/reject/",
        member_views.decide_dn_update,
        {"authorize": False},
        name="dn-update-reject",
    ),
    path("hosts/", host_views.host_list, name="host-list"),
    path("hosts/<int:pk>/", host_views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/check/", host_views.check_host, name="host-check"),
]
