"""Webhook deliveries: each signed POST of a campaign event, with every try recorded."""

from __future__ import annotations

from django.db import models


class WebhookDelivery(models.Model):
    """One signed POST of a campaign event to the campaign's webhook URL, with every try recorded."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=40, default="campaign.run.finished")
    webhook_secret = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Signs webhook bodies; shown once to the owner."
    )
    run_number = models.PositiveIntegerField()
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True, help_text="One entry per try: time, status, error.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "event", "run_number"], name="one_delivery_per_campaign_event_run"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.run_number} of {self.campaign} ({self.state})"
