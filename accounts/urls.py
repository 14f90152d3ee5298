from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_list, name="audit-list"),
    path("users/", views.user_list, name="user-list"),
    path("users/new/", views.user_create, name="user-create"),
    path("users/<int:pk>/", views.user_detail, name="user-detail"),
    path(
        "users/<int:pk>/deactivate/",
        views.user_set_active,
        {"active": False},
        name="user-deactivate",
    ),
    path(
        "users/<int:pk>/reactivate/",
        views.user_set_active,
        {"active": True},
        name="user-reactivate",
    ),
    path("users/<int:pk>/invite/", views.user_invite, name="user-invite"),
    path(
        "users/set-password/<uidb64>/<token>/",
        views.ChoosePasswordView.as_view(),
        name="user-set-password",
    ),
]
