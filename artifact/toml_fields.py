"""Typed reading of TOML tables with errors that name the file, the field and what was expected."""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from artifact.errors import ConfigError

T = TypeVar("T")

_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ConfigError with the file and TOML's own position."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


class Table:
    """One TOML table being read: typed getters, and a check that no unknown key was left over."""

    def __init__(self, data: Any, source: Path, where: str, overrides: dict[str, str] | None = None) -> None:
        # `overrides`: the dotted fields set with `--set` (and the raw values given), so an error names the
        # command-line option rather than the file that did not contain the bad value.
        self.overrides = overrides or {}
        if not isinstance(data, dict):
            if where in self.overrides:
                raise ConfigError(f"--set {where}={self.overrides[where]}: [{where}] is a table; set one of its fields "
                                  f"(--set {where}.KEY=VALUE)")
            raise ConfigError(f"{source}: [{where}] must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.source = source
        self.where = where
        self._read: set[str] = set()

    def _label(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> ConfigError:
        label = self._label(key)
        if label in self.overrides:
            return ConfigError(f"--set {label}={self.overrides[label]}: {message}")
        return ConfigError(f"{self.source}: field '{label}': {message}")

    def get(self, key: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        self._read.add(key)
        if key not in self.data:
            if required:
                raise self.fail(key, f"is required ({_TYPE_NAMES.get(kind, kind.__name__)})")
            return default  # type: ignore[return-value]
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None, *, required: bool = False) -> str:
        value = self.get(key, str, default, required=required)
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}{did_you_mean(value, choices)}")
        return value

    def positive_int(self, key: str, default: int, *, allow_zero: bool = False, maximum: int = 2**31 - 1) -> int:
        """A count: >= 0 (or > 0), and at most `maximum`, so a typo of a few digits cannot ask for a plan that
        never finishes being built."""
        value = self.get(key, int, default)
        if value < 0 or (value == 0 and not allow_zero) or value > maximum:
            lower = ">= 0" if allow_zero else "> 0"
            raise self.fail(key, f"expected an integer {lower} and <= {maximum:,}, got {value}")
        return value

    def sub(self, key: str) -> Table:
        self._read.add(key)
        return Table(self.data.get(key, {}), self.source, self._label(key), self.overrides)

    def check_no_unknown(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            known = sorted(self._read)
            hints = "; ".join(f"'{key}'{did_you_mean(key, known)}" for key in unknown)
            given = [f"--set {self._label(key)}" for key in unknown if self._label(key) in self.overrides]
            where = " and ".join(given) if given else str(self.source)
            raise ConfigError(
                f"{where}: unknown field(s) in [{self.where or 'top level'}]: {hints}. "
                f"Known fields: {', '.join(known)}"
            )


def did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
