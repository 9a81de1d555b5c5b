from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.grouping import Batch
from alerts.message import (
    build_content,
    email_html,
    email_text,
    key_url,
    safe_url,
    slack_escape,
    slack_payload,
    stats_text,
    top_evidence,
)
from finsentry.schema import Evidence
from tests.alerts.alerts_factories import make_alert, make_route

pytestmark = pytest.mark.unit

DASH = "http://dash.example/"


def batch_of(*alerts, sequence: int = 1, total: int | None = None) -> Batch:  # type: ignore[no-untyped-def]
    return Batch(make_route(), "slack", ("k",), tuple(alerts), sequence, total or len(alerts))


def test_update_headline_counts_the_group() -> None:
    content = build_content(batch_of(make_alert(), make_alert(window=1), sequence=3, total=9), DASH)
    assert content.headline == (
        "[WARNING] ticker:AAPL: 2 negative sentiment spikes (update 3, 9 in this group)"
    )


def test_test_sends_are_marked() -> None:
    assert build_content(batch_of(make_alert()), DASH, is_test=True).headline.startswith("[TEST] ")


def test_top_evidence_dedups_and_sorts_most_negative_first() -> None:
    shared = Evidence(id="same", title="t", score=-0.99)
    alerts = (
        make_alert(window=0, evidence=(shared, Evidence(id="a", title="a", score=-0.2))),
        make_alert(window=1, evidence=(shared, Evidence(id="b", title="b", score=-0.5))),
    )
    assert [e.id for e in top_evidence(alerts)] == ["same", "b", "a"]
    assert len(top_evidence(alerts, limit=2)) == 2


def test_key_url_keeps_colon_and_encodes_topic_names() -> None:
    url = key_url(DASH, make_alert("topic:Fed | Central Banks"))
    assert url.startswith("http://dash.example/key/topic:Fed%20%7C%20Central%20Banks?start=")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/x?y=1", "https://a.example/x?y=1"),
        ("http://a.example", "http://a.example"),
        ("javascript:alert(1)", None),
        ("data:text/html,x", None),
        ("https://a.example/<b>", None),
        ("https://a.example/|x", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert safe_url(url) == expected


@given(st.text())
def test_slack_escape_leaves_no_control_characters(text: str) -> None:
    escaped = slack_escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


# Wire text may hold anything UTF-8 can carry except NUL, which the schema refuses.
WIRE_TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@given(
    title=st.text(WIRE_TEXT, max_size=300),
    url=st.none() | st.text(WIRE_TEXT, max_size=100),
)
def test_untrusted_evidence_never_breaks_out_of_markup(title: str, url: str | None) -> None:
    alert = make_alert(evidence=(Evidence(id="p", title=title, url=url, score=-0.5),))
    content = build_content(batch_of(alert), DASH)
    html_body = email_html(content)
    evidence_html = html_body.split("<ul>")[1].split("</ul>")[0]
    assert "<script" not in evidence_html.lower()
    assert evidence_html.count("<a ") <= 1 and evidence_html.count("<li>") == 1
    payload = slack_payload(content)
    json.dumps(payload)
    evidence_text = payload["blocks"][2]["text"]["text"]
    assert evidence_text.count("<") <= 1
    assert "\n" not in email_text(content).split("Most negative posts:\n")[1].split("\n")[0]


def test_slack_block_limits_hold_for_huge_groups() -> None:
    alerts = tuple(make_alert(window=i) for i in range(500))
    payload = slack_payload(build_content(batch_of(*alerts), DASH))
    assert len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        if "text" in block and block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


def test_a_buzz_alert_says_its_volume_spiked_too() -> None:
    quiet = make_alert()
    loud = quiet.model_copy(update={"buzz": True})
    assert stats_text(loud) == stats_text(quiet) + ", and a volume spike (buzz)"
