"""What a notification says, as Slack Block Kit and as e-mail text + HTML; pure functions.

Post titles and URLs come from the open internet: they are escaped for Slack mrkdwn and for
HTML, and only http(s) URLs ever become links.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from alerts.grouping import Batch
from finsentry.schema import Alert, Evidence

MAX_EVIDENCE: Final = 5
MAX_LISTED_ALERTS: Final = 10
MAX_TITLE_CHARS: Final = 200


@dataclass(frozen=True)
class Content:
    """The facts of one notification, shared by every channel's rendering."""

    headline: str
    lead: Alert
    alerts: tuple[Alert, ...]
    evidence: tuple[Evidence, ...]
    alert_url: str
    key_url: str
    is_test: bool


def build_content(batch: Batch, dashboard_url: str, *, is_test: bool = False) -> Content:
    lead = batch.alerts[0]
    count = len(batch.alerts)
    what = "negative sentiment spike" if count == 1 else f"{count} negative sentiment spikes"
    headline = f"[{lead.severity.upper()}] {lead.key}: {what}"
    if batch.is_update:
        headline += f" (update {batch.sequence}, {batch.group_total} in this group)"
    if is_test:
        headline = f"[TEST] {headline}"
    return Content(
        headline=headline,
        lead=lead,
        alerts=batch.alerts,
        evidence=top_evidence(batch.alerts),
        alert_url=alert_url(dashboard_url, lead),
        key_url=key_url(dashboard_url, lead),
        is_test=is_test,
    )


def top_evidence(alerts: tuple[Alert, ...], limit: int = MAX_EVIDENCE) -> tuple[Evidence, ...]:
    """The most negative posts across the alerts, each post once."""
    unique = {item.id: item for alert in alerts for item in alert.evidence}
    return tuple(sorted(unique.values(), key=lambda e: (e.score, e.id))[:limit])


def alert_url(dashboard_url: str, alert: Alert) -> str:
    return f"{dashboard_url.rstrip('/')}/alert/{quote(alert.id, safe='')}"


def key_url(dashboard_url: str, alert: Alert) -> str:
    query = urlencode(
        {"start": alert.window_start.isoformat(), "end": alert.window_end.isoformat()}
    )
    return f"{dashboard_url.rstrip('/')}/key/{quote(alert.key, safe=':')}?{query}"


def safe_url(url: str | None) -> str | None:
    """The URL if it is plain http(s) without characters that could break markup; else None."""
    if not url or any(ch in url for ch in "<>|\"' \n\r\t"):
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def window_text(alert: Alert) -> str:
    return f"{_stamp(alert.window_start)} to {_stamp(alert.window_end)}"


def stats_text(alert: Alert) -> str:
    buzz = ", and a volume spike (buzz)" if alert.buzz else ""
    return (
        f"negative share {alert.neg_share:.0%} vs baseline {alert.baseline:.3f} "
        f"(z = {alert.z:+.2f}), {alert.count} posts, mean score {alert.mean_score:+.2f}{buzz}"
    )


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _clip(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """One line of at most ``limit`` characters (untrusted titles may hold newlines)."""
    return _truncate(" ".join(text.split()), limit)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Slack -----------------------------------------------------------------------------------
def slack_escape(text: str) -> str:
    """Slack mrkdwn needs exactly these three escaped; anything else is shown as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(content: Content) -> dict[str, Any]:
    """An incoming-webhook body: ``text`` for notifications, ``blocks`` for the message."""
    lead = content.lead
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(content.headline, 150)}},
        {
            "type": "section",
            "fields": [
                _field("Key", slack_escape(lead.key)),
                _field("Severity", lead.severity),
                _field("Negative share", f"{lead.neg_share:.0%} (baseline {lead.baseline:.3f})"),
                _field("z vs baseline", f"{lead.z:+.2f}"),
                _field("Posts in window", str(lead.count)),
                _field("Window", window_text(lead)),
            ],
        },
    ]
    if content.evidence:
        lines = [_slack_evidence(item) for item in content.evidence]
        blocks.append(_section("*Most negative posts*\n" + "\n".join(lines)))
    if len(content.alerts) > 1:
        listed = content.alerts[:MAX_LISTED_ALERTS]
        lines = [f"• {slack_escape(a.key)} {window_text(a)}: {stats_text(a)}" for a in listed]
        more = len(content.alerts) - len(listed)
        if more:
            lines.append(f"…and {more} more")
        blocks.append(_section("*Alerts in this message*\n" + "\n".join(lines)))
    blocks.append(
        {
            "type": "actions",
            "elements": [
                _button("Open alert in dashboard", content.alert_url, "open_alert"),
                _button(f"History of {_clip(lead.key, 40)}", content.key_url, "open_key"),
            ],
        }
    )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"alert {lead.id} · model {slack_escape(lead.model_version)}",
                }
            ],
        }
    )
    # ``text`` is mrkdwn too (the notification and clients without blocks show it), and the
    # headline carries the key: escaped like every other untrusted value.
    text = slack_escape(_clip(f"{content.headline}: {stats_text(lead)}", 300))
    return {"text": text, "blocks": blocks}


def _slack_evidence(item: Evidence) -> str:
    title = slack_escape(_clip(item.title or item.id))
    url = safe_url(item.url)
    shown = f"<{url}|{title}>" if url else title
    return f"• {shown} (score {item.score:+.2f})"


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{value}"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, 2900)}}


def _button(label: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "url": url,
        "action_id": action_id,
    }


# E-mail ----------------------------------------------------------------------------------
def email_subject(content: Content) -> str:
    return _clip(content.headline, 180)


def email_text(content: Content) -> str:
    lead = content.lead
    lines = [
        content.headline,
        "",
        f"Key:      {lead.key}",
        f"Severity: {lead.severity}",
        f"Window:   {window_text(lead)}",
        f"Signal:   {stats_text(lead)}",
        f"Model:    {lead.model_version}",
        "",
    ]
    if content.evidence:
        lines.append("Most negative posts:")
        for item in content.evidence:
            url = safe_url(item.url)
            lines.append(f"  - {_clip(item.title or item.id)} (score {item.score:+.2f})")
            if url:
                lines.append(f"    {url}")
        lines.append("")
    if len(content.alerts) > 1:
        lines.append("Alerts in this message:")
        lines.extend(f"  - {a.key} {window_text(a)}: {stats_text(a)}" for a in content.alerts)
        lines.append("")
    lines += [f"Open in dashboard: {content.alert_url}", f"Key history: {content.key_url}", ""]
    return "\n".join(lines)


def email_html(content: Content) -> str:
    """The HTML part; every interpolated value is escaped."""
    esc = html.escape
    lead = content.lead
    rows = [
        ("Key", lead.key),
        ("Severity", lead.severity),
        ("Window", window_text(lead)),
        ("Negative share", f"{lead.neg_share:.0%} (baseline {lead.baseline:.3f})"),
        ("z vs baseline", f"{lead.z:+.2f}"),
        ("Posts in window", str(lead.count)),
        ("Model", lead.model_version),
    ]
    parts = [
        "<!DOCTYPE html><html><body>",
        f"<h2>{esc(content.headline)}</h2>",
        "<table>",
        *(f"<tr><th align='left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    if content.evidence:
        parts.append("<h3>Most negative posts</h3><ul>")
        for item in content.evidence:
            title = esc(_clip(item.title or item.id))
            url = safe_url(item.url)
            shown = f'<a href="{esc(url, quote=True)}">{title}</a>' if url else title
            parts.append(f"<li>{shown} (score {item.score:+.2f})</li>")
        parts.append("</ul>")
    if len(content.alerts) > 1:
        parts.append("<h3>Alerts in this message</h3><ul>")
        parts.extend(
            f"<li>{esc(a.key)} {esc(window_text(a))}: {esc(stats_text(a))}</li>"
            for a in content.alerts
        )
        parts.append("</ul>")
    parts.append(
        f'<p><a href="{esc(content.alert_url, quote=True)}">Open in dashboard</a> · '
        f'<a href="{esc(content.key_url, quote=True)}">Key history</a></p></body></html>'
    )
    return "\n".join(parts)
