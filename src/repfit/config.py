"""Frozen configuration objects, read from the TOML files a user edits (``features/``, ``training/``).

The dataclass defaults *are* the defaults; ``features/default.toml`` and ``training/default.toml``
spell them out (a test keeps them equal).

Each field says, with ``setting(default, section, allowed)``, which TOML ``[section]`` it lives in
and which numbers it allows; its type annotation is the type the loader checks:

- ``bool`` takes only true/false; ``int`` takes whole numbers (not true/false); ``float`` takes any
  finite number (an int is widened; nan and inf are refused);
- ``str`` takes any string; ``Literal["a", "b"]`` one of the listed strings;
- ``tuple[str, ...]`` takes a TOML list of strings; ``Columns`` takes ``"auto"`` or a list of
  column names (a bare ``"industry"`` is refused: it means ``["industry"]``).

Every problem is one ``ConfigError`` line naming the file, the ``[section]``, the key and the fix.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import tomllib
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from repfit.errors import ConfigError

AUTO = "auto"
Columns = Union[Literal["auto"], tuple[str, ...]]  # "auto" (every eligible column) or a list of column names


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows: ``lo``/``hi`` bounds (None: unbounded); ``*_open`` excludes the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        below = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return above and below

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


FRACTION = Range(0, 1, lo_open=True, hi_open=True)  # a share strictly between none and all
SHARE = Range(0, 1, lo_open=True)  # a share that may be all (1.0: no subsampling)
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1)
SEED = Range(0, 2**32 - 1)  # numpy and scikit-learn seeds


def setting(default: Any, section: str, allowed: Range | None = None) -> Any:
    """A config field: its default, the TOML ``[section]`` it lives in, and the numbers it allows."""
    return field(default=default, metadata={"section": section, "allowed": allowed})


@dataclass(frozen=True)
class FeatureConfig:
    """Which dimensions rep strengths are built over, and how strongly rates are shrunk.

    Each ``*_attributes`` is ``"auto"`` (every eligible column) or a tuple of column names.
    """

    # categorical account attributes -> strength per value
    account_attributes: Columns = setting(AUTO, "strengths")
    # numeric account attributes -> strength per size band
    numeric_bands: Columns = setting(AUTO, "strengths")
    # opportunity attributes (e.g. product), weighted by the account's mix
    opportunity_attributes: Columns = setting(AUTO, "strengths")
    # rep & account attributes -> strength on same-value match
    shared_attributes: Columns = setting(AUTO, "strengths")
    exclude: tuple[str, ...] = setting((), "strengths")
    n_bands: int = setting(3, "strengths", Range(2))
    # categorical columns with more distinct values are ids/names: skipped
    max_levels: int = setting(30, "strengths", Range(2))
    # pseudo-deals each rate is shrunk with (empirical Bayes); 0 would divide 0 by 0 for a rep without deals
    prior_deals: float = setting(10.0, "shrinkage", POSITIVE)
    # joint model (features/joint.py): start prior sd of each block (learned in training); 0 = off
    joint_prior_sd: float = setting(0.45, "joint", NON_NEGATIVE)
    # training rows: the joint model is refitted at the start of every such calendar period
    joint_refit_months: int = setting(3, "joint", Range(1, 12))
    # numeric bands: "learned" (joint model's evidence, among 5%..95% quantiles) or "quantile"
    band_edges: Literal["learned", "quantile"] = setting("learned", "strengths")
    # "learned" band edges: beyond this many training deals, searched on the deals of a random sample of reps
    band_search_deals: int = setting(60_000, "strengths", COUNT)


@dataclass(frozen=True)
class TrainConfig:
    """Time split, LightGBM parameters, calibration and the seed."""

    # share of closed opportunities (by created_at) for validation; then the latest share, held out for the test
    validation_fraction: float = setting(0.15, "split", FRACTION)
    test_fraction: float = setting(0.15, "split", FRACTION)
    learning_rate: float = setting(0.03, "lightgbm", POSITIVE)
    num_leaves: int = setting(15, "lightgbm", Range(2))  # LightGBM needs at least two leaves
    min_child_samples: int = setting(40, "lightgbm", NON_NEGATIVE)
    feature_fraction: float = setting(0.8, "lightgbm", SHARE)
    bagging_fraction: float = setting(0.8, "lightgbm", SHARE)
    bagging_freq: int = setting(1, "lightgbm", NON_NEGATIVE)  # 0 = no bagging
    lambda_l2: float = setting(5.0, "lightgbm", NON_NEGATIVE)
    max_rounds: int = setting(2000, "lightgbm", COUNT)
    early_stopping_rounds: int = setting(100, "lightgbm", COUNT)
    # explicit: LightGBM's default threading is ~1000x slower on a loaded 2-core box
    n_jobs: int = setting(2, "lightgbm", COUNT)
    # P(win) may only rise with the rep's win rates (overall, per dimension, pair)
    monotone: bool = setting(True, "lightgbm")
    # feature whose log-odds the booster starts from and corrects; "" = from a constant
    boost_from: str = setting("joint_logit", "lightgbm")
    # after early stopping, refit on train + validation (the test period stays unseen)
    refit: bool = setting(True, "lightgbm")
    # "auto": isotonic or Platt, whichever helps on validation (or none)
    calibration: Literal["auto", "isotonic", "platt", "none"] = setting(AUTO, "calibration")
    seed: int = setting(42, "run", SEED)


# --- types: what a TOML value must be --------------------------------------------------------
_NO = object()  # "the value does not fit the type"
_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` (as TOML parsed it) as type ``tp``: lists become tuples, ints widen to floats.

    Returns the sentinel ``_NO`` when the value does not fit (never converts a bool to a number,
    nor a string to a list).
    """
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return next((v for v in (_coerce(value, a) for a in args) if v is not _NO), _NO)
    if origin is Literal:
        return value if isinstance(value, str) and value in args else _NO
    if origin is tuple:
        items = [_coerce(v, args[0]) for v in value] if isinstance(value, list) else [_NO]
        return _NO if any(i is _NO for i in items) else tuple(items)
    if isinstance(value, bool) and tp is not bool:
        return _NO
    if tp is float and isinstance(value, int):
        return float(value)
    return value if isinstance(value, tp) else _NO


def fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` (as TOML parsed it) is acceptable as type ``tp`` (see ``_coerce``)."""
    return _coerce(value, tp) is not _NO


def describe(tp: Any) -> str:
    """What a value of type ``tp`` looks like, for an error message (``'a list of strings'``)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin is tuple:
        return "a list of " + {str: "strings", int: "whole numbers", float: "numbers"}[args[0]]
    return _NAMES[tp]


def shown(value: Any, width: int = 60) -> str:
    """``repr`` of a value for a one-line message (bools as TOML spells them), cut to ``width`` characters."""
    text = json.dumps(value) if isinstance(value, bool) else repr(value)  # TOML's true, not True
    return text if len(text) <= width else text[: width - 3] + "..."


def _toml(value: Any) -> str:
    """A Python value as TOML would spell it (for the Fix: part of a message)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


# --- the declared layout of a config class ---------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    name: str
    section: str
    type: Any
    allowed: Range | None
    default: Any


@functools.cache
def _specs(cls: type) -> dict[str, _Spec]:
    hints = get_type_hints(cls)
    return {
        f.name: _Spec(f.name, f.metadata["section"], hints[f.name], f.metadata["allowed"], f.default)
        for f in fields(cls)
    }


@functools.cache
def sections(cls: type) -> dict[str, tuple[str, ...]]:
    """The TOML sections of a config class, each with its keys, in declaration order."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in _specs(cls).values():
        out[spec.section] = out.get(spec.section, ()) + (spec.name,)
    return out


def _known(cls: type, section: str) -> str:
    return f"known keys in [{section}]: {', '.join(sections(cls)[section])}"


def _all_sections(cls: type) -> str:
    return "known sections: " + ", ".join(f"[{s}]" for s in sections(cls))


# --- loading ---------------------------------------------------------------------------------
def _misplaced(cls: type, path: Path, section: str, key: str) -> ConfigError | None:
    """The error for ``key`` under ``[section]`` if it is not a setting of that section, else None."""
    specs = _specs(cls)
    spec = specs.get(key)
    if spec is not None and spec.section == section:
        return None
    if spec is not None:
        return ConfigError(
            f"{path}: [{section}] key '{key}' belongs in [{spec.section}], not [{section}]; "
            f"{_known(cls, section)}; Fix: move the {key} line under [{spec.section}]."
        )
    close = difflib.get_close_matches(key, list(specs), n=1)
    hint = f" (did you mean '{close[0]}' in [{specs[close[0]].section}]?)" if close else ""
    return ConfigError(
        f"{path}: [{section}] unknown setting '{key}'; {_known(cls, section)}; "
        f"Fix: correct the spelling{hint} or remove the line."
    )


def _outside(cls: type, path: Path, name: str, value: Any) -> ConfigError:
    """The error for a top-level ``name = value`` that is not one of the class's sections as a table."""
    specs, secs = _specs(cls), sections(cls)
    if name in secs:
        return ConfigError(
            f"{path}: '{name}' must be a section, got {name} = {shown(value)}; {_known(cls, name)}; "
            f"Fix: write [{name}] on a line of its own, with its settings below it."
        )
    if name in specs:
        home = specs[name].section
        return ConfigError(
            f"{path}: key '{name}' is at the top level, outside any section; {_known(cls, home)}; "
            f"Fix: put the {name} line under a [{home}] header."
        )
    if isinstance(value, dict):
        homes = {specs[k].section for k in value if k in specs}
        guess = homes.pop() if len(homes) == 1 else next(iter(difflib.get_close_matches(name, list(secs), n=1)), None)
        keys = ", ".join(map(repr, value)) or "no keys"
        return ConfigError(
            f"{path}: [{name}] unknown section (holding {keys}); {_all_sections(cls)}; "
            f"Fix: {f'rename it [{guess}]' if guess else 'rename or remove it'}."
        )
    close = difflib.get_close_matches(name, list(specs), n=1)
    fix = f"did you mean '{close[0]}'? Put it under [{specs[close[0]].section}]" if close else "remove it"
    return ConfigError(f"{path}: unknown top-level key '{name}'; {_all_sections(cls)}; Fix: {fix}.")


def _type_problem(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return f"is not one of {', '.join(get_args(tp))}"
    return f"must be {describe(tp)}"


def _type_fix(spec: _Spec, value: Any) -> str:
    if isinstance(value, str) and fits([value], spec.type):
        return f"write a list: {spec.name} = {_toml([value])}"
    if spec.type is int and isinstance(value, float) and value.is_integer():
        return f"{spec.name} = {int(value)}"
    return f"e.g. {spec.name} = {_toml(spec.default)}"


def _value(cls: type, path: Path, key: str, value: Any) -> Any:
    """``value`` checked against the declared type and range of setting ``key``."""
    spec = _specs(cls)[key]
    where = f"{path}: [{spec.section}] {key} {shown(value)}"
    got = _coerce(value, spec.type)
    if got is _NO:
        raise ConfigError(f"{where} {_type_problem(spec.type)}; Fix: {_type_fix(spec, value)}.")
    if isinstance(got, float) and not math.isfinite(got):
        raise ConfigError(f"{where} must be a finite number; Fix: e.g. {key} = {_toml(spec.default)}.")
    if spec.allowed is not None and got not in spec.allowed:
        raise ConfigError(
            f"{where} must be {spec.allowed}; Fix: use a value {spec.allowed}, e.g. {key} = {_toml(spec.default)}."
        )
    return got


def _load(cls: type, path: str | Path | None) -> Any:
    if path is None:
        return cls()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found. Fix: pass an existing file, or omit the option for defaults.")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc}); Fix: correct the syntax (UTF-8 text, key = value lines)."
        ) from None
    values: dict[str, Any] = {}
    for name, body in doc.items():
        if name not in sections(cls) or not isinstance(body, dict):
            raise _outside(cls, path, name, body)
        for key, value in body.items():
            error = _misplaced(cls, path, name, key)
            if error is not None:
                raise error
            values[key] = _value(cls, path, key, value)
    return cls(**values)


def load_feature_config(path: str | Path | None = None) -> FeatureConfig:
    """Read a feature spec (``features/*.toml``).

    Parameters
    ----------
    path : the TOML file; None gives the built-in defaults (as ``features/default.toml`` spells them out).

    Returns
    -------
    FeatureConfig, with TOML lists as tuples.

    Raises
    ------
    ConfigError
        One line naming the file, ``[section]``, key and fix: for a missing or malformed file, an
        unknown section or key, a key in the wrong section or outside any section, a value of the
        wrong type (e.g. ``account_attributes = "industry"`` for ``["industry"]``), nan/inf, or a
        number out of range.

    Examples
    --------
    >>> load_feature_config().band_edges
    'learned'
    """
    return _load(FeatureConfig, path)


def load_train_config(path: str | Path | None = None) -> TrainConfig:
    """Read a training config (``training/*.toml``).

    Parameters
    ----------
    path : the TOML file; None gives the built-in defaults (as ``training/default.toml`` spells them out).

    Returns
    -------
    TrainConfig.

    Raises
    ------
    ConfigError
        As ``load_feature_config``; also when validation and test fractions leave under 10% for training.

    Examples
    --------
    >>> load_train_config().calibration
    'auto'
    """
    cfg = _load(TrainConfig, path)
    total = cfg.validation_fraction + cfg.test_fraction
    if total >= 0.9:
        raise ConfigError(
            f"{path}: [split] validation_fraction {cfg.validation_fraction} + test_fraction {cfg.test_fraction} = "
            f"{total:.2f} leaves under 10% of closed opportunities for training; Fix: make them sum below 0.9, "
            "e.g. validation_fraction = 0.15 and test_fraction = 0.15."
        )
    return cfg


def as_dict(cfg: Any) -> dict[str, Any]:
    """The fields of a config object as a flat ``{name: value}`` dict (for run parameters and reports)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


OBJECTIVES = ("expected_value", "p_win")
BLOCK_PAIRS = 200_000  # pairs scored per block by `repfit score`: bounds the memory of scoring


@dataclass(frozen=True)
class AssignConfig:
    """The assignment options (``repfit assign``, ``suggest --all``, ``report``, ``capacity``; see their --help).

    The CLI declares each option once from these fields, with these defaults."""

    objective: str = "expected_value"  # one of OBJECTIVES
    require_match: tuple[str, ...] = ()
    # each rep's total of METRIC within +-TOL of its share (repfit.assign.bands); ("none",) for no band
    balance: tuple[str, ...] = ("accounts=20%",)
    balance_tiers: bool = False
    # a rep's capacity counts accounts, or workload units (the accounts' workload column, default 1 each)
    capacity_unit: str = "accounts"
    split_families: bool = False  # accounts sharing a parent_account_id may go to different reps
    continuity: float = 0.0
    max_moves: int | None = None
    solver: str = "auto"  # "auto" or a name of repfit.assign.solvers.SOLVERS
    # seconds for the plan's solves, band prices included (repfit.assign.plan); None: each solver's own default
    time_limit: float | None = None

    def as_params(self) -> dict[str, Any]:
        """The options as MLflow run parameters."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
