"""URL map of the dashboard."""

import django_rq.urls
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from dashboard.prometheus import metrics
from dashboard.queue_pages import queue_view
from dashboard.views import (
    campaigns,
    charts,
    delivery,
    estimates,
    focal_point,
    generations,
    health,
    intake,
    processing,
    review,
    sharing,
    system,
)

# django-rq's pages, behind a permission and within the Content-Security-Policy (dashboard/queue_pages.py).
queue_urls = [
    re_path(str(pattern.pattern), queue_view(pattern.callback), name=pattern.name)
    for pattern in django_rq.urls.get_api_urlpatterns()
] + django_rq.urls.get_admin_urlpatterns(view_wrapper=queue_view)

handler400 = "dashboard.views.errors.bad_request"

urlpatterns = [
    path("", campaigns.campaign_list, name="campaign-list"),
    # Browsers ask for /favicon.ico on any page that names no icon (the JSON views, django-rq's pages).
    path("favicon.ico", login_not_required(RedirectView.as_view(url=static("favicon.svg"), permanent=True))),
    path("campaigns/<int:pk>/", campaigns.campaign_detail, name="campaign-detail"),
    path("campaigns/<int:pk>/upload/", intake.campaign_upload, name="campaign-upload"),
    path(
        "campaigns/<int:pk>/upload/results/", intake.campaign_upload_results, name="campaign-upload-results"
    ),
    path(
        "campaigns/<int:pk>/upload/results/dismiss/",
        intake.campaign_upload_results_dismiss,
        name="campaign-upload-results-dismiss",
    ),
    path("campaigns/<int:pk>/import-urls/", intake.campaign_import_urls, name="campaign-import-urls"),
    path(
        "campaigns/<int:pk>/import-urls/retry/",
        intake.UrlImportsRequeue.as_view(),
        name="campaign-url-imports-retry",
    ),
    path("campaigns/<int:pk>/process/", processing.campaign_process, name="campaign-process"),
    path("campaigns/<int:pk>/estimate/", estimates.campaign_estimate, name="campaign-estimate"),
    path("campaigns/<int:pk>/budget/", estimates.campaign_budget, name="campaign-budget"),
    path("campaigns/<int:pk>/progress/", processing.campaign_progress, name="campaign-progress"),
    path("campaigns/<int:pk>/failures/", processing.campaign_failures, name="campaign-failures"),
    path("campaigns/<int:pk>/charts/", charts.campaign_charts, name="campaign-charts"),
    path("system/", system.system_status, name="system"),
    path(
        "campaigns/<int:pk>/failures/requeue/",
        processing.RequeueFailed.as_view(),
        name="campaign-requeue-failed",
    ),
    path(
        "campaigns/<int:pk>/resume-remote/", processing.campaign_resume_remote, name="campaign-resume-remote"
    ),
    path("campaigns/<int:pk>/download.zip", delivery.campaign_download, name="campaign-download"),
    path("campaigns/<int:pk>/generate/", generations.campaign_generate, name="campaign-generate"),
    path("campaigns/<int:pk>/webhook/", campaigns.campaign_webhook, name="campaign-webhook"),
    path("generations/<int:pk>/cancel/", generations.GenerationCancel.as_view(), name="generation-cancel"),
    path("generations/<int:pk>/requeue/", generations.GenerationRequeue.as_view(), name="generation-requeue"),
    path("webhooks/fal/<str:token>/", generations.fal_webhook, name="fal-webhook"),
    path("tasks/<int:pk>/requeue/", processing.TaskRequeue.as_view(), name="task-requeue"),
    path("tasks/<int:pk>/preview.webp", delivery.task_preview, name="task-preview"),
    path("sources/<int:pk>/thumbnail.webp", delivery.source_thumbnail, name="source-thumbnail"),
    path("sources/<int:pk>/focal-point/", focal_point.source_focal_point, name="source-focal-point"),
    path("outputs/<int:pk>/", delivery.output_download, name="output-download"),
    # Review and approve, compare versions, re-run (dashboard/views/review.py).
    path("outputs/<int:pk>/compare/", review.output_compare, name="output-compare"),
    path("outputs/<int:pk>/review/", review.output_review, name="output-review"),
    path("outputs/<int:pk>/thumbnail.webp", delivery.output_thumbnail_image, name="output-thumbnail"),
    path(
        "outputs/<int:pk>/gallery.webp",
        delivery.output_gallery_thumbnail_image,
        name="output-gallery-thumbnail",
    ),
    path("tasks/<int:pk>/review/", review.task_review, name="task-review"),
    path("sources/<int:pk>/original/", delivery.source_original, name="source-original"),
    path(
        "campaigns/<int:pk>/recipes/<int:recipe_pk>/versions/", review.version_compare, name="version-compare"
    ),
    path(
        "campaigns/<int:pk>/recipes/<int:recipe_pk>/rerun/",
        review.CampaignRerun.as_view(),
        name="campaign-rerun",
    ),
    # Share links (dashboard/views/sharing.py); the /share/ pages need no account.
    path("campaigns/<int:pk>/share-links/", sharing.share_link_create, name="share-link-create"),
    path("share-links/<int:pk>/revoke/", sharing.ShareLinkRevoke.as_view(), name="share-link-revoke"),
    path("share/<str:token>/", sharing.shared_campaign, name="share-link"),
    path("share/<str:token>/download.zip", sharing.shared_download, name="share-link-download"),
    path("share/<str:token>/outputs/<int:pk>.webp", sharing.shared_thumbnail, name="share-link-thumbnail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/rq/", include((queue_urls, "django_rq"))),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]
