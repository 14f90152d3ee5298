from django.urls import path

from members import views

urlpatterns = [
    path("", views.mirror_list, name="mirror-list"),
    path("mirrors/<str:name>/", views.mirror_detail, name="mirror-detail"),
    path("mirrors/<str:name>/refresh/", views.refresh_mirror, name="mirror-refresh"),
    path(
        "mirrors/<str:name>/members/<int:pk>/authorize/",
        views.decide_member,
        {"authorize": True},
        name="member-authorize",
    ),
    path(
        "mirrors/<str:name>/members/<int:pk>/reject/",
        views.decide_member,
        {"authorize": False},
        name="member-reject",
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
    path("hosts/<int:pk>/check/", views.check_host, name="host-check"),
]
