"""The hot-reload appliers of the server's components: what each one does with the keys a reload changed
(siprec.reload decides which keys are hot; KEY_RULES names the applier of each)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from siprec.config import AnalyticsConfig, Config, WebhooksConfig
from siprec.reload import Applier, ConfigReloader

if TYPE_CHECKING:
    from siprec.api.context import ApiContext
    from siprec.sip.admission import AdmissionControl

__all__ = [
    "ADMISSION_PREFIXES",
    "AUTH_PREFIXES",
    "STT_PREFIXES",
    "admission_applier",
    "amqp_filter_applier",
    "analytics_applier",
    "auth_applier",
    "log_level_applier",
    "register_components",
    "stt_applier",
    "webhooks_applier",
]


def register_components(
    reloader: ConfigReloader,
    *,
    api: ApiContext | None = None,
    admission: AdmissionControl | None = None,
    amqp_publisher: _FilteredPublisher | None = None,
    webhook_sender: _ConfiguredSender | None = None,
    analytics: _AnalyticsStage | None = None,
    stt: _SttSettings | None = None,
) -> None:
    """The appliers of this module for the components given (log.level always), under fixed names, so a second
    call (e.g. after start, once the AMQP publisher exists) adds or replaces without duplicates."""
    reloader.register("log.level", log_level_applier(), name="logging")
    if api is not None:
        reloader.register(AUTH_PREFIXES, auth_applier(api), name="api-auth")
    if admission is not None:
        reloader.register(ADMISSION_PREFIXES, admission_applier(admission), name="sip-admission")
    if amqp_publisher is not None:
        reloader.register("amqp", amqp_filter_applier(amqp_publisher), name="amqp-filter")
    if webhook_sender is not None:
        reloader.register("webhooks", webhooks_applier(webhook_sender), name="webhooks")
    if analytics is not None:
        reloader.register("analytics", analytics_applier(analytics), name="analytics")
    if stt is not None:
        reloader.register(STT_PREFIXES, stt_applier(stt), name="stt-settings")


def log_level_applier() -> Applier:
    """log.level on the root logger (aiohttp's access lines stay for DEBUG only, as configure_logging sets them)."""

    def apply(old: Config, new: Config) -> None:
        level = new.log.level
        logging.getLogger().setLevel(level)
        logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)

    return apply


AUTH_PREFIXES = ("auth", "pause_resume.require_auth", "pause_resume.api_key")


def auth_applier(ctx: ApiContext) -> Applier:
    """auth.* and pause_resume.require_auth/api_key: the API's authenticator, updated in place so that whoever holds
    it (the WebSocket hub holds its verify_token) sees the new keys. Built from the new config first: a JWT public
    key file that cannot be read fails the reload before anything changed."""
    from siprec.api.auth import Authenticator

    def apply(old: Config, new: Config) -> None:
        fresh = Authenticator(new.auth, new.pause_resume)
        vars(ctx.auth).update(vars(fresh))

    return apply


ADMISSION_PREFIXES = ("limits", "sip.trusted_sources")


def admission_applier(admission: AdmissionControl) -> Applier:
    """limits.* and sip.trusted_sources on the SIP admission control (for new dialogs; live ones stay)."""
    from siprec.sip.admission import SourceLimits

    def apply(old: Config, new: Config) -> None:
        per = new.limits.per_source
        admission.update_limits(
            trusted_sources=[str(n) for n in new.sip.trusted_sources],
            per_source=SourceLimits(per.concurrent, per.hourly, per.daily),
            max_sessions=new.limits.max_sessions,
        )

    return apply


class _FilteredPublisher(Protocol):
    wants: Callable[[str], bool]


class _ConfiguredSender(Protocol):
    config: WebhooksConfig


class _SttSettings(Protocol):
    def apply_settings(self, *, language: str, partials: bool) -> None: ...


STT_PREFIXES = ("stt.language", "stt.partials")


def stt_applier(stt: _SttSettings) -> Applier:
    """stt.language and stt.partials: for the legs that open and the post-call jobs that start after the reload
    (the new language was checked against the running providers by the reload's own check)."""

    def apply(old: Config, new: Config) -> None:
        stt.apply_settings(language=new.stt.language, partials=new.stt.partials)

    return apply


class _AnalyticsStage(Protocol):
    def apply(self, config: AnalyticsConfig) -> None: ...


def analytics_applier(analytics: _AnalyticsStage) -> Applier:
    """analytics.*: keywords for the next finals, the snapshot interval from now, enabled at once."""

    def apply(old: Config, new: Config) -> None:
        analytics.apply(new.analytics)

    return apply


def amqp_filter_applier(publisher: _FilteredPublisher) -> Applier:
    """amqp.publish_*: the AmqpPublisher's routing-key filter (`wants`), rebuilt from the new switches."""
    from siprec.events.amqp import publish_filter

    def apply(old: Config, new: Config) -> None:
        publisher.wants = publish_filter(new.amqp)

    return apply


def webhooks_applier(sender: _ConfiguredSender) -> Applier:
    """webhooks.urls/secret/max_retries: the WebhookSender reads its `config` section per delivery; hand it the new
    one (timeout_s stays: it is restart-required, so the section in force still carries the old value)."""

    def apply(old: Config, new: Config) -> None:
        sender.config = new.webhooks

    return apply
