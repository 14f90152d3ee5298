from rest_framework.routers import SimpleRouter

from accounts.api import views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet)
router.register("tokens", views.TokenViewSet, basename="token")
router.register("users", views.UserViewSet)
router.register("mirror-roles", views.MirrorRoleViewSet)

urlpatterns = router.urls
