from rest_framework.routers import SimpleRouter

from members.api import views

router = SimpleRouter()
router.register("mirrors", views.MirrorViewSet)
router.register("hosts", views.HostViewSet)
router.register("instances", views.InstanceViewSet)
router.register("drifts", views.DriftViewSet)
router.register("members", views.MemberViewSet)
router.register("pending-members", views.PendingMemberViewSet, basename="pending-member")
router.register("dn-updates", views.DNUpdateViewSet)
router.register("databases", views.MirroredDatabaseViewSet)
router.register("database-copies", views.DatabaseCopyViewSet)

urlpatterns = router.urls
