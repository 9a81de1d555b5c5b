"""Routing rules: which alerts go to which channels, when, and how they are grouped.

Rules come from a TOML or YAML file (``alerts_routing_file``). Routes are tried in order and
the first match wins unless it says ``continue = true``, as in Prometheus Alertmanager.
Everything here is pure: no clock, no I/O beyond reading the file.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from alerts.errors import RoutingError
from finsentry.config import known_time_zone
from finsentry.schema import Alert

Channel = Literal["slack", "email"]
CHANNELS: Final = ("slack", "email")
SEVERITY_RANK: Final = {"warning": 1, "critical": 2}
GroupLabel = Literal["key", "severity", "kind"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """``30``, ``"30s"``, ``"5m"``, ``"4h"``, ``"1d"`` -> timedelta (bare numbers are seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration like 30, '30s', '5m', '4h' or '1d'")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _clock_time(value: Any) -> Any:
    """YAML 1.1 reads an unquoted 22:00 as the integer 1320; refuse rather than misread it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is a number, not a time of day: quote it, e.g. '22:00'")
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class QuietHours(_Rule):
    """A daily span (local time) in which a route holds its notifications until the end."""

    start: ClockTime
    end: ClockTime
    timezone: str = "UTC"
    except_critical: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_time_zone(value)

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet span containing ``now``, or None when ``now`` is not quiet."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        today = local.date()
        if self.start == self.end:
            return None
        if self.start < self.end:
            if self.start <= local.time() < self.end:
                return datetime.combine(today, self.end, zone)
            return None
        if local.time() >= self.start:
            return datetime.combine(today + timedelta(days=1), self.end, zone)
        if local.time() < self.end:
            return datetime.combine(today, self.end, zone)
        return None


class Timing(_Rule):
    """Alertmanager-style timing; see alerts.grouping for what each one does."""

    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)


class Route(_Rule):
    """One rule: which alerts (by key pattern and severity) go to which channels."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    keys: tuple[str, ...] = ("*",)
    min_severity: Literal["warning", "critical"] = "warning"
    # true: only alerts whose window is also a volume spike ("negative spike AND buzz");
    # false: only those whose window is not; unset: either.
    buzz: bool | None = None
    channels: tuple[Channel, ...] = Field(min_length=1)
    email_to: tuple[str, ...] = ()
    group_by: tuple[GroupLabel, ...] = ("key",)
    group_wait: Duration
    group_interval: Duration
    repeat_interval: Duration
    quiet_hours: QuietHours | None = None
    continue_: bool = Field(default=False, alias="continue")

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [addr for addr in value if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", addr)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return value

    def matches(self, alert: Alert) -> bool:
        """Key matches one of the glob patterns, severity is at least ``min_severity`` and
        buzz is as ``buzz`` asks."""
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if self.buzz is not None and alert.buzz != self.buzz:
            return False
        return any(fnmatch.fnmatchcase(alert.key, pattern) for pattern in self.keys)

    def group_labels(self, alert: Alert) -> tuple[str, ...]:
        """The values that decide which group of this route an alert joins."""
        values = {"key": alert.key, "severity": alert.severity, "kind": alert.key.split(":")[0]}
        return tuple(values[label] for label in self.group_by)


class RoutingConfig(_Rule):
    """The whole routing file."""

    routes: tuple[Route, ...] = Field(min_length=1)

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def match(self, alert: Alert) -> list[Route]:
        """Routes the alert goes to: in order, stopping at the first match without continue."""
        matched: list[Route] = []
        for route in self.routes:
            if route.matches(alert):
                matched.append(route)
                if not route.continue_:
                    break
        return matched


def build_routing(raw: dict[str, Any], *, where: str = "routing") -> RoutingConfig:
    """Validate a decoded routing document; ``[defaults]`` fill each route's timing."""
    if not isinstance(raw, dict):
        raise RoutingError(f"{where}: expected a mapping with a 'routes' list")
    unknown = sorted(set(raw) - {"defaults", "routes"})
    if unknown:
        raise RoutingError(f"{where}: unknown top-level entries {unknown}")
    try:
        defaults = Timing.model_validate(raw.get("defaults") or {})
    except ValidationError as exc:
        raise RoutingError(f"{where}: [defaults]: {_describe(exc)}") from exc
    routes = raw.get("routes") or []
    if not isinstance(routes, list):
        raise RoutingError(f"{where}: 'routes' must be a list")
    built = []
    for index, entry in enumerate(routes):
        label = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        if not isinstance(entry, dict):
            raise RoutingError(f"{where}: route {label}: expected a mapping")
        try:
            route = Route.model_validate({**defaults.model_dump(), **entry})
        except ValidationError as exc:
            raise RoutingError(f"{where}: route {label}: {_describe(exc)}") from exc
        if "email" in route.channels and not route.email_to:
            raise RoutingError(f"{where}: route {label}: channel 'email' needs email_to")
        built.append(route)
    names = [route.name for route in built]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RoutingError(f"{where}: route names must be unique, repeated: {duplicates}")
    try:
        return RoutingConfig(routes=tuple(built))
    except ValidationError as exc:
        raise RoutingError(f"{where}: {_describe(exc)}") from exc


def load_routing(path: Path) -> RoutingConfig:
    """Read a ``.toml``, ``.yaml`` or ``.yml`` routing file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingError(f"{path}: cannot read routing file: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise RoutingError(f"{path}: routing file must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RoutingError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    return build_routing(raw, where=str(path))


def default_routing(channels: tuple[Channel, ...]) -> RoutingConfig:
    """Without a routing file: every alert to the given channels with default timing."""
    if not channels:
        raise RoutingError(
            "no routing file (FINSENTRY_ALERTS_ROUTING_FILE) and no Slack webhook configured: "
            "nowhere to send alerts; see deploy/alerts.example.toml"
        )
    return build_routing({"routes": [{"name": "default", "channels": list(channels)}]})


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
