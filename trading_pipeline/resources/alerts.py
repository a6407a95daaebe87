"""The one `alerts` resource every sensor and job delivers through (log + table, webhook, Slack, Apprise)."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from trading_pipeline.resources.alert_channels import ChannelConfig, split_apprise_urls
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.store.database import Database


class AlertsResource(dg.ConfigurableResource):
    """Webhook URL, Slack token and Apprise URLs are secrets: configure them with EnvVar only.

    It does not hold a database of its own: callers pass the run's (the `database` resource), so a run has
    exactly one engine — a nested resource would be initialized a second time, with a second pool."""

    # repr=False: once resolved these hold the secrets themselves; a repr must not show them.
    webhook_url: str | None = Field(default=None, repr=False)
    slack_token: str | None = Field(default=None, repr=False)
    slack_channel: str | None = None
    # TRADING_PIPELINE_APPRISE_URLS as given: comma- or space-separated Apprise URLs, one channel each.
    apprise_urls: str | None = Field(default=None, repr=False)
    dedupe_window_minutes: int = 30
    webhook_timeout_seconds: float = 5.0

    def channels(self) -> ChannelConfig:
        return ChannelConfig(
            webhook_url=self.webhook_url or None,
            slack_token=self.slack_token or None,
            slack_channel=self.slack_channel or None,
            apprise_urls=tuple(split_apprise_urls(self.apprise_urls)),
        )

    def dispatcher(self, db: Database | None, logger: object | None = None) -> AlertDispatcher:
        return AlertDispatcher.from_config(
            db,
            self.channels(),
            dedupe_window=timedelta(minutes=self.dedupe_window_minutes),
            webhook_timeout=self.webhook_timeout_seconds,
            logger=logger,
        )
