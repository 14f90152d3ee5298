from django.urls import path

from members.wizard import views

wizard = views.MirrorWizard.as_view(
    views.STEP_FORMS, url_name="mirror-wizard", condition_dict=views.CONDITIONS
)

urlpatterns = [
    path("new-mirror/", views.start, name="mirror-wizard-start"),
    path("new-mirror/<int:draft>/discard/", views.discard, name="mirror-wizard-discard"),
    path("new-mirror/<int:draft>/add-host/", views.add_host, name="mirror-wizard-add-host"),
    path(
        "new-mirror/<int:draft>/check-hosts/", views.check_hosts, name="mirror-wizard-check-hosts"
    ),
    path(
        "new-mirror/<int:draft>/review-again/",
        views.review_again,
        name="mirror-wizard-review-again",
    ),
    path(
        "new-mirror/<int:draft>/review-lines/",
        views.review_lines,
        name="mirror-wizard-review-lines",
    ),
    path("new-mirror/<int:draft>/<str:step>/", wizard, name="mirror-wizard"),
]
