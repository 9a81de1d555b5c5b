"""Delivery through real peers on 127.0.0.1, driven by an explicit clock: no sleeping."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.dispatch import Dispatcher
from alerts.errors import SecretsError
from alerts.notifiers import EmailNotifier, Notifier, SlackNotifier
from alerts.retry import RetryPolicy
from alerts.routing import build_routing
from alerts.secrets import AlertSecrets
from finsentry.config import Settings, load_settings
from finsentry.schema import Evidence
from finsentry.store import Store
from tests.alerts.alerts_factories import T0, make_alert
from tests.alerts.alerts_peers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_PATH,
    FakeSlack,
    SlackReply,
    SmtpPeer,
)

pytestmark = pytest.mark.integration

S = timedelta(seconds=1)
DASHBOARD = "http://dash.example.com:8050"
POLICY = RetryPolicy(base_s=0.5, factor=2, max_s=10, max_attempts=4)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield db
    db.close()


def routing(channels: list[str], **route: Any) -> Any:
    entry = {
        "name": "desk",
        "channels": channels,
        "group_wait": 30,
        "group_interval": 300,
        "repeat_interval": 3600,
        **route,
    }
    if "email" in channels:
        entry.setdefault("email_to", ["desk@example.com", "risk@example.com"])
    return build_routing({"routes": [entry]})


def slack_dispatcher(store: Store, slack: FakeSlack, *, timeout_s: float = 5.0) -> Dispatcher:
    secrets = AlertSecrets(slack_webhook_url=SecretStr(slack.url), smtp_password=None)
    notifier = SlackNotifier(SecretStr(slack.url), timeout_s=timeout_s)
    return Dispatcher(
        store,
        routing(["slack"]),
        {"slack": notifier},
        policy=POLICY,
        dashboard_url=DASHBOARD,
        secrets=secrets,
    )


def smtp_settings(peer: SmtpPeer, security: str = "none", **extra: Any) -> Settings:
    return load_settings(
        alerts_smtp_host="127.0.0.1",
        alerts_smtp_port=peer.port,
        alerts_smtp_security=security,
        alerts_smtp_ca_file=peer.ca_file,
        alerts_smtp_from="finsentry <alerts@finsentry.test>",
        alerts_smtp_timeout_s=5.0,
        **extra,
    )


def email_dispatcher(store: Store, settings: Settings, password: str | None = None) -> Dispatcher:
    secret = SecretStr(password) if password else None
    notifiers: dict[str, Notifier] = {"email": EmailNotifier(settings, secret)}
    return Dispatcher(
        store,
        routing(["email"]),
        notifiers,
        policy=POLICY,
        dashboard_url=DASHBOARD,
        secrets=AlertSecrets(slack_webhook_url=None, smtp_password=secret),
    )


# Slack ------------------------------------------------------------------------------------
def test_slack_block_kit_payload(store: Store, slack: FakeSlack) -> None:
    dispatcher = slack_dispatcher(store, slack)
    alert = make_alert("ticker:AAPL", severity="critical", z=5.25)
    assert dispatcher.accept(alert, T0) == 1
    assert store.get_delivery(alert.id, "slack:desk").status == "pending"  # type: ignore[union-attr]
    assert dispatcher.tick(T0 + 29 * S) == []
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "delivered"

    (request,) = slack.requests
    assert request["path"] == WEBHOOK_PATH
    assert request["content_type"] == "application/json"
    payload = request["json"]
    assert payload["text"].startswith("[CRITICAL] ticker:AAPL: negative sentiment spike")
    header, facts, evidence, actions, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[CRITICAL] ticker:AAPL: negative sentiment spike"},
    }
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in facts["fields"]}
    assert fields == {
        "*Key*": "ticker:AAPL",
        "*Severity*": "critical",
        "*Negative share*": "72% (baseline 0.180)",
        "*z vs baseline*": "+5.25",
        "*Posts in window*": "37",
        "*Window*": "2026-11-28 14:00 UTC to 2026-11-28 14:05 UTC",
    }
    assert evidence["text"]["text"] == (
        "*Most negative posts*\n"
        "• <https://news.example.com/0/1|ticker:AAPL shares plunge after guidance cut>"
        " (score -0.91)\n"
        "• Analysts slash targets (score -0.70)"
    )
    buttons = {e["action_id"]: e["url"] for e in actions["elements"]}
    assert buttons == {
        "open_alert": f"{DASHBOARD}/alert/{alert.id}",
        "open_key": f"{DASHBOARD}/key/ticker:AAPL?start=2026-11-28T14%3A00%3A00%2B00%3A00"
        "&end=2026-11-28T14%3A05%3A00%2B00%3A00",
    }
    assert alert.id in context["elements"][0]["text"]

    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None
    assert (record.status, record.attempts, record.error) == ("delivered", 1, None)
    assert record.delivered_at is not None


def test_slack_escapes_untrusted_titles_and_drops_unsafe_links(
    store: Store, slack: FakeSlack
) -> None:
    dispatcher = slack_dispatcher(store, slack)
    evil = (
        Evidence(id="a", title="<!channel> & <https://evil|click>", url="javascript:x", score=-1.0),
        Evidence(id="b", title="ok", url="https://x.example/a|b>", score=-0.9),
    )
    dispatcher.accept(make_alert(evidence=evil), T0)
    dispatcher.tick(T0 + 30 * S)
    text = slack.payloads()[0]["blocks"][2]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt; (score -1.00)" in text
    assert "javascript" not in text and "<https://x.example" not in text


def test_slack_escapes_the_key_in_the_notification_text(store: Store, slack: FakeSlack) -> None:
    """The top-level ``text`` (what a notification shows) carried the key unescaped, so a
    source named ``<!channel>`` pinged the whole channel."""
    dispatcher = slack_dispatcher(store, slack)
    dispatcher.accept(make_alert("source:<!channel>&<https://evil|x>"), T0)
    dispatcher.tick(T0 + 30 * S)
    text = slack.payloads()[0]["text"]
    assert "source:&lt;!channel&gt;&amp;&lt;https://evil|x&gt;: negative sentiment spike" in text
    assert "<" not in text and ">" not in text


def test_burst_of_fifty_alerts_is_one_message(store: Store, slack: FakeSlack) -> None:
    dispatcher = slack_dispatcher(store, slack)
    alerts = [make_alert("ticker:TSLA", window=i, z=3 + i / 10) for i in range(50)]
    for i, alert in enumerate(alerts):
        dispatcher.accept(alert, T0 + i * 0.5 * S)
    outcomes = dispatcher.tick(T0 + 30 * S)
    assert [o.status for o in outcomes] == ["delivered"]
    (payload,) = slack.payloads()
    assert payload["blocks"][0]["text"]["text"] == (
        "[WARNING] ticker:TSLA: 50 negative sentiment spikes"
    )
    listing = payload["blocks"][3]["text"]["text"]
    assert listing.startswith("*Alerts in this message*\n• ticker:TSLA")
    assert listing.endswith("…and 40 more")
    assert "z = +7.90" in listing  # the strongest comes first
    records = [store.get_delivery(a.id, "slack:desk") for a in alerts]
    assert {(r.status, r.attempts) for r in records if r} == {("delivered", 1)}
    assert len([r for r in records if r]) == 50


def test_500_then_200_retries_once(store: Store, slack: FakeSlack) -> None:
    slack.script = [SlackReply(status=500, body="internal_error")]
    dispatcher = slack_dispatcher(store, slack)
    alert = make_alert()
    dispatcher.accept(alert, T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying"
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and record.status == "retrying" and record.attempts == 1
    assert "HTTP 500" in (record.error or "")
    assert dispatcher.next_wake() == T0 + 30.5 * S
    assert dispatcher.tick(T0 + 30.4 * S) == []
    (second,) = dispatcher.tick(T0 + 30.5 * S)
    assert (second.status, second.attempts) == ("delivered", 2)
    assert len(slack.requests) == 2 and slack.answered_ok == 1
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("delivered", 2)
    assert dispatcher.next_wake() is None and dispatcher.in_flight == 0


def test_429_waits_for_retry_after(store: Store, slack: FakeSlack) -> None:
    slack.script = [SlackReply(status=429, body="rate_limited", headers={"Retry-After": "7"})]
    dispatcher = slack_dispatcher(store, slack)
    dispatcher.accept(make_alert(), T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying" and "HTTP 429" in (first.error or "")
    assert dispatcher.next_wake() == T0 + 37 * S
    assert dispatcher.tick(T0 + 36.9 * S) == []
    (second,) = dispatcher.tick(T0 + 37 * S)
    assert second.status == "delivered"
    assert slack.answered_ok == 1 and len(slack.requests) == 2


@pytest.mark.parametrize("retry_after", ["999999999", "99999999999999999999"])
def test_retry_after_is_capped_at_the_longest_backoff(
    store: Store, slack: FakeSlack, retry_after: str
) -> None:
    """A peer asking for 31 years parked the delivery that long; one asking for more seconds
    than a timedelta holds raised OverflowError out of tick(), which stopped the service."""
    slack.script = [SlackReply(status=429, headers={"Retry-After": retry_after})]
    dispatcher = slack_dispatcher(store, slack)
    dispatcher.accept(make_alert(), T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying"
    assert dispatcher.next_wake() == T0 + 30 * S + POLICY.max_s * S
    (second,) = dispatcher.tick(T0 + 40 * S)
    assert second.status == "delivered"


def test_hanging_peer_times_out_then_delivers(store: Store, slack: FakeSlack) -> None:
    slack.script = [SlackReply(hang=True)]
    dispatcher = slack_dispatcher(store, slack, timeout_s=0.3)
    alert = make_alert()
    dispatcher.accept(alert, T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying"
    assert first.error == "Slack webhook timed out after 0.3s (ReadTimeout)"
    (second,) = dispatcher.tick(T0 + 31 * S)
    assert second.status == "delivered" and slack.answered_ok == 1
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("delivered", 2)


def test_permanent_failure_is_recorded_surfaced_and_secret_free(
    store: Store, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.script = [SlackReply(status=404, body="no_service")]
    dispatcher = slack_dispatcher(store, slack)
    alert = make_alert()
    dispatcher.accept(alert, T0)
    with caplog.at_level(logging.DEBUG):
        (outcome,) = dispatcher.tick(T0 + 30 * S)
        assert dispatcher.tick(T0 + 1000 * S) == []
    assert outcome.status == "failed"
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("failed", 1)
    assert record.error == "Slack webhook answered HTTP 404: 'no_service'"
    assert any(
        r.levelno == logging.ERROR and "failed permanently" in r.message for r in caplog.records
    )
    assert "s3cr3tT0k3n" not in caplog.text
    assert len(slack.requests) == 1


def test_gives_up_after_max_attempts(store: Store, slack: FakeSlack) -> None:
    slack.script = [SlackReply(status=503) for _ in range(10)]
    dispatcher = slack_dispatcher(store, slack)
    alert = make_alert()
    dispatcher.accept(alert, T0)
    now = T0 + 30 * S
    statuses = []
    while (wake := dispatcher.next_wake()) is not None:
        now = max(now, wake)
        statuses += [o.status for o in dispatcher.tick(now)]
    assert statuses == ["retrying", "retrying", "retrying", "failed"]
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("failed", 4)
    assert (record.error or "").startswith(
        "gave up after 4 attempts: Slack webhook answered HTTP 503"
    )


def test_restart_delivers_pending_once_and_never_resends(store: Store, slack: FakeSlack) -> None:
    delivered, pending = make_alert(window=0), make_alert("ticker:MSFT", window=0)
    first = slack_dispatcher(store, slack)
    first.accept(delivered, T0)
    first.tick(T0 + 30 * S)
    first.accept(pending, T0 + 40 * S)
    first.close()  # the process dies here: MSFT was consumed and recorded, never sent
    assert len(slack.requests) == 1

    second = slack_dispatcher(store, slack)
    assert second.recover(T0 + 100 * S) == 1
    # Kafka redelivers both (offsets were not committed): neither is queued again.
    assert second.accept(delivered, T0 + 100 * S) == 0
    assert second.accept(pending, T0 + 100 * S) == 0
    (outcome,) = second.tick(T0 + 130 * S)
    assert outcome.alert_ids == (pending.id,) and outcome.status == "delivered"
    assert second.tick(T0 + 10_000 * S) == []
    keys = [p["blocks"][1]["fields"][0]["text"] for p in slack.payloads()]
    assert keys == ["*Key*\nticker:AAPL", "*Key*\nticker:MSFT"]


def test_restart_keeps_group_interval(store: Store, slack: FakeSlack) -> None:
    first = slack_dispatcher(store, slack)
    first.accept(make_alert(window=0), T0)
    first.tick(T0 + 30 * S)
    first.close()
    second = slack_dispatcher(store, slack)
    second.recover(T0 + 40 * S)
    second.accept(make_alert(window=1), T0 + 40 * S)
    # Without the saved timing this would go out at T0+70s as a fresh group.
    assert second.next_wake() == T0 + 330 * S
    (outcome,) = second.tick(T0 + 330 * S)
    assert outcome.status == "delivered"
    update = slack.payloads()[1]["blocks"][0]["text"]["text"]
    assert update.endswith("(update 2, 2 in this group)")


def test_restart_keeps_attempt_count_of_retrying(store: Store, slack: FakeSlack) -> None:
    slack.script = [SlackReply(status=502)]
    first = slack_dispatcher(store, slack)
    alert = make_alert()
    first.accept(alert, T0)
    first.tick(T0 + 30 * S)
    second = slack_dispatcher(store, slack)
    assert second.recover(T0 + 60 * S) == 1
    (outcome,) = second.tick(T0 + 90 * S)
    assert outcome.status == "delivered"
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("delivered", 2)


def test_a_crash_looping_service_stops_retrying(store: Store, slack: FakeSlack) -> None:
    """Each restart began counting attempts from one again, so a service that died after
    every attempt retried forever; the store's count now decides (max_attempts 4)."""
    slack.script = [SlackReply(status=503) for _ in range(20)]
    alert = make_alert()
    first = slack_dispatcher(store, slack)
    first.accept(alert, T0)
    now = T0 + 30 * S
    for _restart in range(8):
        dispatcher = slack_dispatcher(store, slack)
        dispatcher.recover(now)
        wake = dispatcher.next_wake()
        if wake is not None:
            now = max(now, wake)
            dispatcher.tick(now)
        dispatcher.close()  # the process dies before the retry
        now += 60 * S
    assert len(slack.requests) == 4
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and (record.status, record.attempts) == ("failed", 4)


class _DiesWhileSending:
    """A notifier whose process is killed in the middle of every send."""

    channel = "slack"

    def __init__(self) -> None:
        self.sends = 0

    def send(self, content: Any, route: Any) -> str | None:
        self.sends += 1
        raise SystemExit("killed while sending")

    def close(self) -> None:
        """Nothing held."""


def test_an_attempt_is_counted_before_it_is_made(store: Store) -> None:
    """A service killed while sending recorded nothing, so it sent again on every restart."""
    notifier = _DiesWhileSending()
    alert = make_alert()
    now = T0
    for restart in range(8):
        dispatcher = Dispatcher(
            store,
            routing(["slack"]),
            {"slack": notifier},
            policy=POLICY,
            dashboard_url=DASHBOARD,
            secrets=AlertSecrets(slack_webhook_url=None, smtp_password=None),
        )
        if restart == 0:
            dispatcher.accept(alert, now)
        dispatcher.recover(now)
        wake = dispatcher.next_wake()
        if wake is not None:
            now = max(now, wake)
            with pytest.raises(SystemExit):
                dispatcher.tick(now)
        now += 60 * S
    assert notifier.sends == 4
    record = store.get_delivery(alert.id, "slack:desk")
    assert record is not None and record.status == "failed"
    assert record.error == "gave up after 4 attempts (counted across restarts)"


# E-mail -----------------------------------------------------------------------------------
def test_email_multipart_headers_and_content(store: Store, smtp_plain: SmtpPeer) -> None:
    dispatcher = email_dispatcher(store, smtp_settings(smtp_plain))
    hostile = (
        Evidence(
            id="x",
            title="<script>alert(1)</script> Crash & burn",
            url="https://n.example/?a=1&b=<2>",
            score=-0.95,
        ),
    )
    alert = make_alert("ticker:NVDA", severity="critical", evidence=hostile)
    dispatcher.accept(alert, T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "delivered"
    (message,) = smtp_plain.recorder.messages
    assert smtp_plain.recorder.envelopes == [
        ("alerts@finsentry.test", ["desk@example.com", "risk@example.com"])
    ]
    assert message["From"] == "finsentry <alerts@finsentry.test>"
    assert message["To"] == "desk@example.com, risk@example.com"
    assert message["Subject"] == "[CRITICAL] ticker:NVDA: negative sentiment spike"
    assert message["X-Finsentry-Alert-Ids"] == alert.id
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    text_body, html_body = text.get_content(), html.get_content()
    assert "Key:      ticker:NVDA" in text_body
    assert "negative share 72% vs baseline 0.180 (z = +4.20), 37 posts" in text_body
    assert "<script>alert(1)</script> Crash & burn (score -0.95)" in text_body
    assert f"Open in dashboard: {DASHBOARD}/alert/{alert.id}" in text_body
    assert "<script>" not in html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Crash &amp; burn" in html_body
    assert f'<a href="{DASHBOARD}/alert/{alert.id}">Open in dashboard</a>' in html_body
    assert "n.example" not in html_body  # a URL with markup characters is not linked
    record = store.get_delivery(alert.id, "email:desk")
    assert record is not None and (record.status, record.attempts) == ("delivered", 1)


def test_email_starttls_with_auth(store: Store, smtp_starttls: SmtpPeer) -> None:
    settings = smtp_settings(smtp_starttls, "starttls", alerts_smtp_username=SMTP_USER)
    dispatcher = email_dispatcher(store, settings, SMTP_PASSWORD)
    dispatcher.accept(make_alert(), T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "delivered"
    assert len(smtp_starttls.recorder.messages) == 1


# aiosmtpd cannot tell that an implicit-TLS session is encrypted and warns about AUTH.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_implicit_tls_with_auth(store: Store, smtp_implicit_tls: SmtpPeer) -> None:
    settings = smtp_settings(smtp_implicit_tls, "tls", alerts_smtp_username=SMTP_USER)
    dispatcher = email_dispatcher(store, settings, SMTP_PASSWORD)
    dispatcher.accept(make_alert(), T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "delivered"
    assert len(smtp_implicit_tls.recorder.messages) == 1


def test_email_wrong_password_is_permanent_and_masked(
    store: Store, smtp_starttls: SmtpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = smtp_settings(smtp_starttls, "starttls", alerts_smtp_username=SMTP_USER)
    dispatcher = email_dispatcher(store, settings, "not-the-password")
    dispatcher.accept(make_alert(), T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "failed" and "535" in (outcome.error or "")
    assert "not-the-password" not in caplog.text
    assert smtp_starttls.recorder.messages == []


def test_smtp_password_without_tls_is_refused_unless_allowed(smtp_plain: SmtpPeer) -> None:
    """With alerts_smtp_security = none the login went out in clear text, unasked."""
    settings = smtp_settings(smtp_plain, "none", alerts_smtp_username=SMTP_USER)
    with pytest.raises(SecretsError, match="over a connection without TLS"):
        EmailNotifier(settings, SecretStr(SMTP_PASSWORD))
    allowed = smtp_settings(
        smtp_plain, "none", alerts_smtp_username=SMTP_USER, alerts_smtp_allow_plaintext_auth=True
    )
    EmailNotifier(allowed, SecretStr(SMTP_PASSWORD)).close()
    EmailNotifier(smtp_settings(smtp_plain, "none"), None).close()


def test_smtp_refuses_then_accepts(store: Store, smtp_plain: SmtpPeer) -> None:
    smtp_plain.recorder.refusals = ["451 4.3.0 Mailbox busy, try again later"]
    dispatcher = email_dispatcher(store, smtp_settings(smtp_plain))
    alert = make_alert()
    dispatcher.accept(alert, T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying" and "451" in (first.error or "")
    (second,) = dispatcher.tick(T0 + 30.5 * S)
    assert second.status == "delivered"
    assert smtp_plain.recorder.data_attempts == 2
    assert len(smtp_plain.recorder.messages) == 1
    record = store.get_delivery(alert.id, "email:desk")
    assert record is not None and (record.status, record.attempts) == ("delivered", 2)


def test_smtp_greylisting_at_rcpt_is_retried(store: Store, smtp_plain: SmtpPeer) -> None:
    smtp_plain.recorder.rcpt_refusals = {
        "desk@example.com": ["450 4.2.0 Greylisted, come back later"],
        "risk@example.com": ["450 4.2.0 Greylisted, come back later"],
    }
    dispatcher = email_dispatcher(store, smtp_settings(smtp_plain))
    dispatcher.accept(make_alert(), T0)
    (first,) = dispatcher.tick(T0 + 30 * S)
    assert first.status == "retrying" and "refused every recipient" in (first.error or "")
    (second,) = dispatcher.tick(T0 + 31 * S)
    assert second.status == "delivered" and len(smtp_plain.recorder.messages) == 1


def test_smtp_partial_refusal_delivers_and_notes_it(store: Store, smtp_plain: SmtpPeer) -> None:
    smtp_plain.recorder.rcpt_refusals = {"risk@example.com": ["550 5.1.1 No such user"]}
    dispatcher = email_dispatcher(store, smtp_settings(smtp_plain))
    alert = make_alert()
    dispatcher.accept(alert, T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "delivered"
    assert smtp_plain.recorder.envelopes[0][1] == ["desk@example.com"]
    record = store.get_delivery(alert.id, "email:desk")
    assert record is not None and record.status == "delivered"
    assert "refused risk@example.com (550 5.1.1 No such user)" in (record.error or "")


def test_smtp_5xx_is_permanent(store: Store, smtp_plain: SmtpPeer) -> None:
    smtp_plain.recorder.refusals = ["554 5.7.1 Message rejected"]
    dispatcher = email_dispatcher(store, smtp_settings(smtp_plain))
    alert = make_alert()
    dispatcher.accept(alert, T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "failed" and dispatcher.next_wake() is None
    record = store.get_delivery(alert.id, "email:desk")
    assert record is not None and record.status == "failed"
    assert "554 5.7.1 Message rejected" in (record.error or "")


def test_smtp_unreachable_is_transient(store: Store, tmp_path: Path) -> None:
    settings = load_settings(
        alerts_smtp_host="127.0.0.1", alerts_smtp_port=1, alerts_smtp_security="none"
    )
    dispatcher = email_dispatcher(store, settings)
    dispatcher.accept(make_alert(), T0)
    (outcome,) = dispatcher.tick(T0 + 30 * S)
    assert outcome.status == "retrying" and "ConnectionRefusedError" in (outcome.error or "")
