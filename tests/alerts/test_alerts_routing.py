from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.errors import RoutingError
from alerts.routing import QuietHours, build_routing, load_routing, parse_duration
from tests.alerts.alerts_factories import make_alert, make_route

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (30, 30),
        (1.5, 1.5),
        ("30s", 30),
        ("5m", 300),
        ("4h", 14_400),
        ("1d", 86_400),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["5 minutes", "-3s", "", True, None, "1w"])
def test_parse_duration_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)


def test_first_match_wins_unless_continue() -> None:
    routing = build_routing(
        {
            "routes": [
                {"name": "aapl", "keys": ["ticker:AAPL"], "channels": ["slack"], "continue": True},
                {"name": "tickers", "keys": ["ticker:*"], "channels": ["slack"]},
                {"name": "rest", "channels": ["slack"]},
            ]
        }
    )
    assert [r.name for r in routing.match(make_alert("ticker:AAPL"))] == ["aapl", "tickers"]
    assert [r.name for r in routing.match(make_alert("ticker:MSFT"))] == ["tickers"]
    assert [r.name for r in routing.match(make_alert("market"))] == ["rest"]


def test_min_severity_filters() -> None:
    route = make_route(min_severity="critical")
    assert not route.matches(make_alert(severity="warning"))
    assert route.matches(make_alert(severity="critical"))


def test_a_route_can_ask_for_negative_spike_and_buzz() -> None:
    loud = make_alert().model_copy(update={"buzz": True})
    assert make_route(buzz=True).matches(loud)
    assert not make_route(buzz=True).matches(make_alert())
    assert make_route(buzz=False).matches(make_alert())
    assert not make_route(buzz=False).matches(loud)
    assert make_route().matches(loud) and make_route().matches(make_alert())
    (route,) = build_routing(
        {"routes": [{"name": "loud", "buzz": True, "channels": ["slack"]}]}
    ).routes
    assert route.buzz is True


def test_defaults_fill_timing_and_routes_override() -> None:
    routing = build_routing(
        {
            "defaults": {"group_wait": "10s", "group_interval": "1m", "repeat_interval": "1h"},
            "routes": [{"name": "a", "channels": ["slack"], "group_wait": 0}],
        }
    )
    route = routing.routes[0]
    assert (route.group_wait, route.group_interval) == (timedelta(0), timedelta(minutes=1))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"routes": [{"name": "a", "channels": ["email"]}]}, "email_to"),
        ({"routes": [{"name": "a", "channels": ["pager"]}]}, "route a: channels"),
        ({"routes": [{"name": "a", "channels": ["slack"], "webhook_url": "x"}]}, "webhook_url"),
        ({"routes": [{"name": "a", "channels": ["slack"]}] * 2}, "unique"),
        ({"routes": []}, "routes"),
        ({"route": []}, "unknown top-level"),
        ({"routes": [{"name": "a", "channels": ["slack"], "email_to": ["nope"]}]}, "e-mail"),
    ],
)
def test_bad_routing_is_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        build_routing(raw, where="routing.toml")


def test_example_file_loads_and_yaml_equals_toml(tmp_path: Path) -> None:
    toml_routing = load_routing(REPO / "deploy" / "alerts.example.toml")
    yaml_file = tmp_path / "alerts.yaml"
    yaml_file.write_text(
        "defaults: {group_wait: 30s, group_interval: 5m, repeat_interval: 4h}\n"
        "routes:\n"
        "  - name: x\n"
        "    keys: ['ticker:*']\n"
        "    channels: [slack, email]\n"
        "    email_to: [desk@example.com]\n"
        "    quiet_hours: {start: '22:00', end: '07:00', timezone: Europe/London}\n"
    )
    routing = load_routing(yaml_file)
    assert routing.routes[0].quiet_hours == QuietHours(
        start=time(22), end=time(7), timezone="Europe/London"
    )
    assert len(toml_routing.routes) >= 2


def test_unquoted_yaml_time_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yml"
    path.write_text(
        "routes:\n  - name: x\n    channels: [slack]\n"
        "    quiet_hours: {start: 22:00, end: '07:00'}\n"
    )
    with pytest.raises(RoutingError, match="1320 is a number, not a time of day"):
        load_routing(path)


def test_unknown_suffix_and_bad_syntax(tmp_path: Path) -> None:
    ini = tmp_path / "alerts.ini"
    ini.write_text("x")
    with pytest.raises(RoutingError, match="must end in"):
        load_routing(ini)
    bad = tmp_path / "alerts.toml"
    bad.write_text("routes = [")
    with pytest.raises(RoutingError, match="not valid TOML"):
        load_routing(bad)


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours(start=time(22), end=time(7), timezone="UTC")
    day = datetime(2026, 11, 28, tzinfo=UTC)
    assert quiet.quiet_until(day.replace(hour=12)) is None
    assert quiet.quiet_until(day.replace(hour=23)) == day.replace(hour=7) + timedelta(days=1)
    assert quiet.quiet_until(day.replace(hour=3)) == day.replace(hour=7)
    assert quiet.quiet_until(day.replace(hour=7)) is None


def test_quiet_hours_in_local_time() -> None:
    quiet = QuietHours(start=time(9), end=time(17), timezone="America/New_York")
    # 15:00 UTC is 10:00 in New York in November (EST, UTC-5).
    until = quiet.quiet_until(datetime(2026, 11, 28, 15, tzinfo=UTC))
    assert until is not None
    assert until.astimezone(UTC) == datetime(2026, 11, 28, 22, tzinfo=UTC)


@given(
    start=st.times(),
    end=st.times(),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_quiet_until_is_after_now_and_not_quiet_then(start: time, end: time, now: datetime) -> None:
    quiet = QuietHours(start=start, end=end, timezone="UTC")
    until = quiet.quiet_until(now)
    if until is not None:
        assert now < until <= now + timedelta(days=1)
        assert quiet.quiet_until(until) is None
