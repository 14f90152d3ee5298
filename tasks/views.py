"""Job pages: what ran, what is running, and how it went."""

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from accounts.decorators import any_mirror_required, check_mirror_role
from accounts.roles import VIEWER, scope
from tasks.models import Job

PAGE_SIZE = 50


@any_mirror_required
def job_list(request):
    jobs = scope(Job.objects, request.user).select_related("requested_by").defer("log", "result")
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "tasks/job_list.html", {"page": page})


@any_mirror_required
def job_detail(request, pk):
    job = get_object_or_404(Job.objects.select_related("requested_by"), pk=pk)
    check_mirror_role(request, job.mirror_id, VIEWER)
    return render(request, "tasks/job_detail.html", {"job": job})
