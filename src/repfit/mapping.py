"""How a source's files, columns and labels map onto the data contract (``repfit.toml``), and the
presets shipped for the standard exports of the most common CRMs (``--mapping hubspot``).

A mapping is plain TOML; ``repfit mapping show hubspot`` prints a preset to copy and edit. Every key
is checked against ``MAPPING_LAYOUT``: a problem is one ``ConfigError`` line naming the file, the
section, the key and the fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from repfit.config import describe, fits, shown
from repfit.errors import ConfigError

TABLES = ("reps", "accounts", "opportunities")
MAPPING_FILE = "repfit.toml"
PRESETS = ("hubspot", "salesforce")
ANY_OTHER = "*"  # [outcome] open = ["*"]: every label that is neither won nor lost is open
OnBadRows = Literal["strict", "quarantine"]
MAX_REJECTED_SHARE = 0.2
MAX_AUC = 0.9

# What a repfit.toml may hold: [section] -> key -> type. A dict[str, ...] is a sub-table keyed by the
# source's own names: [columns.reps] sales_agent = "rep_id"; [values.opportunities.product] GTXPro = "GTX Pro".
MAPPING_LAYOUT: dict[str, dict[str, Any]] = {
    "export": {"name": str, "optional_columns": bool},
    "files": {t: str for t in TABLES},
    "columns": {t: dict[str, str] for t in TABLES},
    "derive": {t: dict[str, str] for t in ("reps", "accounts")},
    "join": {t: str for t in ("reps", "accounts")},
    "values": {t: dict[str, dict[str, str]] for t in TABLES},
    "outcome": {k: tuple[str, ...] for k in ("won", "lost", "open")},
    "dates": {"format": str},
    "numbers": {"thousands": str},
    "exclude": {"columns": tuple[str, ...]},
    "leakage": {"max_auc": float, "keep": tuple[str, ...]},
    "rows": {"on_bad": OnBadRows, "max_rejected_share": float},
}
_MAPPING_SECTIONS = "known sections: " + ", ".join(f"[{s}]" for s in MAPPING_LAYOUT)


@dataclass(frozen=True)
class Mapping:
    """How a source's files, columns and labels map onto the contract (``repfit.toml``).

    Example ``repfit.toml``::

        [files]
        reps = "sales_teams.csv"
        [columns.reps]
        sales_agent = "rep_id"
        [outcome]
        won = ["Won"]
        lost = ["Lost"]
        open = ["Engaging", "Prospecting"]
        [values.opportunities.product]
        GTXPro = "GTX Pro"

    A one-file export (deals only) names the deal columns that describe the account or the rep under
    ``[derive.accounts]`` / ``[derive.reps]``: each account takes the value on its latest deal where not
    empty. ``[join] accounts = "name"`` joins a second (companies) file on that column instead of its id.
    """

    files: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    derive: dict[str, dict[str, str]] = field(default_factory=dict)
    join: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    won: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    open: tuple[str, ...] = ()
    date_format: str = "ISO8601"
    thousands: str | None = None
    exclude: tuple[str, ...] = ()
    max_auc: float = MAX_AUC
    keep: tuple[str, ...] = ()
    on_bad_rows: OnBadRows | None = None  # None: not set here (the command's default, strict)
    max_rejected_share: float | None = None
    optional_columns: bool = False
    name: str | None = None
    source: str | None = None

    @classmethod
    def from_toml(cls, path: str | Path) -> Mapping:
        """Read a ``repfit.toml``.

        Raises
        ------
        ConfigError
            One line naming the file, ``[section]``, key and fix: for a missing or malformed file, an
            unknown section, table or key, a key outside any section, or a value of the wrong type
            (e.g. ``won = "Won"`` for ``won = ["Won"]``).
        """
        path = Path(path)
        if not path.is_file():
            presets = " or ".join(PRESETS)
            raise ConfigError(f"{path}: mapping file not found. Fix: pass an existing file, or a preset ({presets}).",
                              option="mapping")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}). Fix: save the mapping file as UTF-8 text.") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str) -> Mapping:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc}). Fix the syntax of the mapping file.") from None
        _check_mapping(source, raw)
        return cls._from_raw(raw, source)

    @classmethod
    def _from_raw(cls, raw: dict[str, Any], source: str) -> Mapping:
        outcome, rows, leakage, export = (raw.get(k, {}) for k in ("outcome", "rows", "leakage", "export"))
        return cls(
            files=raw.get("files", {}), columns=raw.get("columns", {}), derive=raw.get("derive", {}),
            join=raw.get("join", {}), values=raw.get("values", {}),
            won=tuple(outcome.get("won", ())), lost=tuple(outcome.get("lost", ())), open=tuple(outcome.get("open", ())),
            date_format=raw.get("dates", {}).get("format", "ISO8601"),
            thousands=raw.get("numbers", {}).get("thousands"),
            exclude=tuple(raw.get("exclude", {}).get("columns", ())),
            max_auc=float(leakage.get("max_auc", MAX_AUC)), keep=tuple(leakage.get("keep", ())),
            on_bad_rows=rows.get("on_bad"), max_rejected_share=rows.get("max_rejected_share"),
            optional_columns=bool(export.get("optional_columns", False)), name=export.get("name"), source=source,
        )

    def excluded(self, column: str) -> bool:
        """Whether a source column is excluded by ``[exclude] columns`` (glob patterns, case-insensitive)."""
        name = column.strip().lower()
        return any(fnmatch.fnmatchcase(name, p.strip().lower()) for p in self.exclude)

    def open_any(self) -> bool:
        return ANY_OTHER in self.open


def preset_text(name: str) -> str:
    """The TOML text of a shipped preset (``hubspot``, ``salesforce``)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}. "
                          f"Fix: use one of those{f' (did you mean {close[0]!r}?)' if close else ''}.")
    return resources.files("repfit.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def resolve_mapping(data_dir: Path, mapping: str | Path | Mapping | None) -> Mapping:
    """The mapping to read ``data_dir`` with: a ``Mapping``, a preset name, a file, or DATA/repfit.toml if present."""
    if isinstance(mapping, Mapping):
        return mapping
    if mapping is not None:
        if str(mapping) in PRESETS and not Path(mapping).is_file():
            return Mapping.from_text(preset_text(str(mapping)), f"preset {mapping}")
        return Mapping.from_toml(mapping)
    default = data_dir / MAPPING_FILE
    return Mapping.from_toml(default) if default.is_file() else Mapping()


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _check_mapping(path: str, raw: dict[str, Any]) -> None:
    """Raise one ``ConfigError`` for the first section, key or value that ``MAPPING_LAYOUT`` does not allow."""
    for section, body in raw.items():
        if section not in MAPPING_LAYOUT or not isinstance(body, dict):
            raise _mapping_section_error(path, section, body)
        layout = MAPPING_LAYOUT[section]
        for key, value in body.items():
            if key not in layout:
                what = "table" if set(layout) <= set(TABLES) else "key"
                close = difflib.get_close_matches(key, list(layout), n=1)
                raise ConfigError(
                    f"{path}: [{section}] unknown {what} '{key}'; known keys in [{section}]: {', '.join(layout)}; "
                    f"Fix: use one of those{f' (did you mean {close[0]!r}?)' if close else ''}."
                )
            _check_mapping_value(path, section, key, value, layout[key])
    share = raw.get("rows", {}).get("max_rejected_share")
    if share is not None and not 0 <= share <= 1:
        raise ConfigError(f"{path}: [rows] key 'max_rejected_share' must be a share from 0 to 1, got {shown(share)}; "
                          f"Fix: max_rejected_share = {MAX_REJECTED_SHARE}.")
    auc = raw.get("leakage", {}).get("max_auc")
    if auc is not None and not 0.5 <= auc <= 1:  # an AUC taken either way round is 0.5 at worst
        raise ConfigError(f"{path}: [leakage] key 'max_auc' must be an AUC from 0.5 to 1 (1: off), got {shown(auc)}; "
                          f"Fix: max_auc = {MAX_AUC}.")


def _mapping_section_error(path: str, name: str, body: Any) -> ConfigError:
    """The error for a top-level ``name = body`` that is not one of the mapping's sections as a table."""
    if name in MAPPING_LAYOUT:
        return ConfigError(
            f"{path}: '{name}' must be a section, got {name} = {shown(body)}; known keys in [{name}]: "
            f"{', '.join(MAPPING_LAYOUT[name])}; Fix: write [{name}] on a line of its own, with its entries below it."
        )
    homes = [s for s, keys in MAPPING_LAYOUT.items() if name in keys]
    if homes:
        return ConfigError(
            f"{path}: key '{name}' is at the top level, outside any section; {_MAPPING_SECTIONS}; "
            f"Fix: put it under {' or '.join(f'[{s}]' for s in homes)}."
        )
    close = difflib.get_close_matches(name, list(MAPPING_LAYOUT), n=1)
    fix = f"rename it [{close[0]}]" if close else "rename or remove it"
    if not isinstance(body, dict):
        return ConfigError(f"{path}: unknown top-level key '{name}'; {_MAPPING_SECTIONS}; Fix: {fix}.")
    keys = ", ".join(map(repr, body)) or "no keys"
    return ConfigError(f"{path}: [{name}] unknown section (holding {keys}); {_MAPPING_SECTIONS}; Fix: {fix}.")


def _check_mapping_value(path: str, section: str, key: str, value: Any, tp: Any) -> None:
    if get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{path}: [{section}] key '{key}' must be a table of name = \"value\" lines, got {shown(value)}; "
                f"Fix: write [{section}.{_toml_key(key)}] on a line of its own, with the lines below it."
            )
        for k, v in value.items():
            _check_mapping_value(path, f"{section}.{_toml_key(key)}", k, v, get_args(tp)[1])
        return
    if fits(value, tp):
        return
    items = value if isinstance(value, list) else [value]
    strings = [str(v) for v in items if not isinstance(v, (dict, list))] or ["..."]
    if get_origin(tp) is Literal:
        strings = [str(get_args(tp)[-1])]
    example = json.dumps(strings if get_origin(tp) is tuple else strings[0])
    if tp in (float, bool):
        example = {"max_auc": str(MAX_AUC), "max_rejected_share": str(MAX_REJECTED_SHARE)}.get(key, "true")
    raise ConfigError(
        f"{path}: [{section}] key '{key}' must be {describe(tp)}, got {shown(value)}; "
        f"Fix: {_toml_key(key)} = {example}."
    )
