"""`spec.notifications`: who hears about a rollout's decisions, and which ones, defined once.

The same `NotificationEvent` list feeds the CRD enum, the operator-level subscriptions (chart values), what the
reconciler turns into notifications (`domain/notifications.py`) and the docs. Targets hold no secret: every URL
and signing key is a reference to a Secret key in the object's namespace (URLs of chat services embed tokens).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field

from modelship.domain.api_base import ApiModel, cel, cel_rules

MAX_SUBSCRIPTIONS = 4
"""Per object (the operator-level ones come on top): the whole spec must stay under etcd's object size."""
DEFAULT_SECRET = "modelship-notifications"
"""The Secret name the chart lets the operator read in every namespace (`notifications.secretNames`)."""


class NotificationEvent(StrEnum):
    """Decisions worth telling a person about: each is also a Kubernetes Event reason of the same name."""

    APPROVAL_REQUIRED = "ApprovalRequired"
    """A canary step with `approval` waits for `kubectl modelship promote`."""
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    """Automatic rollback (SLO, output comparison, deadline, validation) or abort; the evidence is attached."""
    ANALYSIS_FAILED = "AnalysisFailed"
    """One failed SLO check (the rollback follows after `failureLimit` of them)."""
    PAUSED = "Paused"
    RESUMED = "Resumed"
    DEPLOY_FAILED = "DeployFailed"
    """The first revision of an object never became available or valid."""
    RESTORED = "Restored"
    """After a rollback or undo, a cold previous revision was redeployed, validated and took the traffic."""
    UNDONE = "Undone"
    WINDOW_ENDED = "PostPromotionWindowEnded"


ALL_EVENTS = tuple(NotificationEvent)


class SecretKeyRef(ApiModel):
    """One key of a Secret in the ModelDeployment's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] = Field(
        default=DEFAULT_SECRET,
        description="Secret name. The operator may read only the names the chart grants "
        f"(`notifications.secretNames`, default `{DEFAULT_SECRET}`).",
    )
    key: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        description="Key in the Secret's data."
    )


class WebhookTarget(ApiModel):
    """A generic HTTP endpoint: JSON with the evidence, POSTed, HMAC-SHA256 signed when a key is given."""

    url: SecretKeyRef = Field(description="Secret key holding the http(s) URL.")
    signing_key: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the HMAC key; the body's signature is sent as "
        "`X-Modelship-Signature: sha256=<hex>`.",
    )


class AppriseTarget(ApiModel):
    """A chat or paging service through Apprise (Slack, Teams, Discord, Mattermost, PagerDuty, e-mail, ...)."""

    url: SecretKeyRef = Field(description="Secret key holding the Apprise URL, e.g. `slack://T/B/C`.")


class Subscription(ApiModel):
    """One target and the events it hears about."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.webhook) != has(self.apprise)", "set exactly one of webhook or apprise"),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = Field(
        description="Names the subscription in metrics, Events and delivery ids."
    )
    events: Annotated[list[NotificationEvent], Field(max_length=len(ALL_EVENTS))] = Field(
        default_factory=lambda: list(ALL_EVENTS),
        description="Events to send (default: all of them).",
    )
    webhook: WebhookTarget | None = Field(default=None, description="A generic webhook.")
    apprise: AppriseTarget | None = Field(default=None, description="A chat service through Apprise.")


NAMES_UNIQUE = cel(
    "!has(self.notifications) || self.notifications.all(a, self.notifications.exists_one(b, b.name == a.name))",
    "notifications names must be unique",
    ".notifications",
)
