"""URL map of the dashboard."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import views

urlpatterns = [
    path("", views.campaign_list, name="campaign-list"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="campaign-detail"),
    path("campaigns/<int:pk>/upload/", views.campaign_upload, name="campaign-upload"),
    path("campaigns/<int:pk>/process/", views.campaign_process, name="campaign-process"),
    path("campaigns/<int:pk>/progress/", views.campaign_progress, name="campaign-progress"),
    path("campaigns/<int:pk>/failures/", views.campaign_failures, name="campaign-failures"),
    path("campaigns/<int:pk>/failures/requeue/", views.requeue_failed, name="campaign-requeue-failed"),
    path("campaigns/<int:pk>/download.zip", views.campaign_download, name="campaign-download"),
    path("tasks/<int:pk>/requeue/", views.task_requeue, name="task-requeue"),
    path("tasks/<int:pk>/preview.webp", views.task_preview, name="task-preview"),
    path("sources/<int:pk>/thumbnail.webp", views.source_thumbnail, name="source-thumbnail"),
    path("outputs/<int:pk>/", views.output_download, name="output-download"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]
