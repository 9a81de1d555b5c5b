"""A write-buffer over a mapping, so table state changes only after outputs are sent."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class StagedMapping(MutableMapping[str, Any]):
    """Reads through to ``base``; writes and deletes wait for ``commit``.

    The signal agent computes with staged state, awaits delivery of the signal points and
    alerts, and only then commits. A crash in between replays the input against the old
    state and re-emits the same outputs, which the store upserts: nothing is lost.
    """

    def __init__(self, base: MutableMapping[str, Any]) -> None:
        self.base = base
        self.writes: dict[str, Any] = {}
        self.deleted: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self.deleted:
            raise KeyError(key)
        if key in self.writes:
            return self.writes[key]
        return self.base[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value
        self.deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.writes.pop(key, None)
        self.deleted.add(key)

    def __iter__(self) -> Iterator[str]:
        for key in self.base:
            if key not in self.deleted and key not in self.writes:
                yield key
        yield from self.writes

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in self.deleted:
            return False
        return key in self.writes or key in self.base

    def commit(self) -> None:
        for key in self.deleted:
            if key in self.base:
                del self.base[key]
        for key, value in self.writes.items():
            self.base[key] = value
        self.writes.clear()
        self.deleted.clear()
