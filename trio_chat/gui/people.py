"""Who is online, as the room's side panel lists them: sorted as names compare."""

from __future__ import annotations

from collections.abc import Iterable

from ..rules import name_key


class Online:
    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def replace(self, names: Iterable[str]) -> None:
        self._names = {name_key(name): name for name in names}

    def joined(self, name: str) -> None:
        self._names[name_key(name)] = name

    def left(self, name: str) -> None:
        self._names.pop(name_key(name), None)

    def __contains__(self, name: str) -> bool:
        return name_key(name) in self._names

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        return [self._names[key] for key in sorted(self._names)]
