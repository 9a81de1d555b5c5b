"""What can go wrong in alerting, and whether trying again can help.

::

    AlertsError                  base of everything raised by alerts/
    ├── RoutingError             the routing file is missing, malformed or contradictory
    ├── SecretsError             a secret is missing, unreadable, or sits where secrets may not
    └── NotifyError              one delivery attempt on one channel failed
        ├── TransientNotifyError timeout, connection error, HTTP 5xx/429/408, SMTP 4xx: retry
        └── PermanentNotifyError HTTP 4xx, SMTP 5xx, bad credentials: record, surface, stop
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of the alerts package's errors."""


class RoutingError(AlertsError):
    """The routing rules could not be loaded; the message names the file and the rule."""


class SecretsError(AlertsError):
    """A secret could not be resolved safely."""


class NotifyError(AlertsError):
    """One attempt to deliver a notification failed. Messages never contain secrets."""


class TransientNotifyError(NotifyError):
    """Worth retrying. ``retry_after_s`` is the peer's own hint (HTTP Retry-After), if any."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentNotifyError(NotifyError):
    """Retrying cannot help; an operator must fix configuration or the peer."""
