from rest_framework.routers import SimpleRouter

from tasks.api.views import JobViewSet

router = SimpleRouter()
router.register("jobs", JobViewSet)

urlpatterns = router.urls
