"""The feature catalogue: every model column with what it is, so no code outside ``features/`` reads a name.

A column's *role* says what kind of quantity it is (a static attribute, a deal count, a shrunk rate, a rep
strength on one dimension ...), its *subject* whose history or attribute it describes (rep, account, the
pair), its *dimension* the strength axis it belongs to (or None), and whether P(win) may only rise with it
(monotone). The model bundle carries the catalogue (``FeatureSpace.catalogue``); monotone constraints,
contribution grouping, reasons, their sentences and the uncertainty of a pair all query it.

Example
-------
>>> cat = Catalogue.build(dimensions=(("industry", DimensionKind.ACCOUNT),), rep_attributes=(("tenure", False),),
...                       account_attributes=(), joint=False)
>>> [c.name for c in cat.select(role=Role.STRENGTH)]
['industry_strength']
>>> cat.topic("industry_lift") == cat.topic("industry_n") == Topic(TopicKind.DIMENSION, "industry")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class DimensionKind(Enum):
    """How a strength dimension takes its value for a (rep, account) pair."""

    ACCOUNT = "account"  # a categorical account attribute (industry): the account's value
    BAND = "band"  # a numeric account attribute cut into bands (employees): the account's band
    OPPORTUNITY = "opportunity"  # an opportunity attribute (product): weighted by the account's deal mix
    MATCH = "match"  # an attribute both carry (region): does the rep's value equal the account's


class Role(Enum):
    """What a column measures."""

    ATTRIBUTE = "attribute"  # a rep or account attribute as given (coded if categorical)
    VOLUME = "volume"  # prior deals behind a rate
    RATE = "rate"  # a shrunk win rate (rep overall, account, the pair)
    STRENGTH = "strength"  # the rep's shrunk win rate on the account's value of one dimension
    LIFT = "lift"  # that strength minus the rep's overall rate
    COMBINED = "combined"  # the naive-Bayes sum of the per-dimension log-odds lifts
    JOINT_TOTAL = "joint_total"  # the joint model's whole log-odds (rep, account and their interactions)
    JOINT_REP = "joint_rep"  # the joint model's rep-specific part: the rep's own effect plus every dimension's
    JOINT_DIM = "joint_dim"  # the joint model's rep effect on one dimension's value


class Subject(Enum):
    """Whose attribute or history a column describes."""

    REP = "rep"
    ACCOUNT = "account"
    PAIR = "pair"  # the rep on this account (strengths, pair history, joint parts)


class TopicKind(Enum):
    """What a reason talks about: one topic groups the columns that describe the same fact."""

    DIMENSION = "dimension"  # the rep on the account's value of one dimension
    REP_HISTORY = "rep_history"  # the rep's record overall
    PAIR_HISTORY = "pair_history"  # the rep's record with this very account
    ACCOUNT_HISTORY = "account_history"  # the account's own record
    COMBINED = "combined"  # all dimensions together
    JOINT = "joint"  # the joint model's whole or rep-wide log-odds: every dimension at once, no single plain fact
    REP_ATTRIBUTE = "rep_attribute"
    ACCOUNT_ATTRIBUTE = "account_attribute"


@dataclass(frozen=True)
class Topic:
    kind: TopicKind
    name: str  # the dimension or attribute; "" for the history topics


@dataclass(frozen=True)
class Column:
    """One model column."""

    name: str
    role: Role
    subject: Subject
    dimension: str | None = None
    attribute: str | None = None  # the source attribute of an ATTRIBUTE column
    categorical: bool = False
    monotone: bool = False  # P(win) may only rise with it

    @property
    def topic(self) -> Topic:
        if self.dimension is not None:
            return Topic(TopicKind.DIMENSION, self.dimension)
        if self.role is Role.ATTRIBUTE:
            kind = TopicKind.REP_ATTRIBUTE if self.subject is Subject.REP else TopicKind.ACCOUNT_ATTRIBUTE
            return Topic(kind, self.attribute or self.name)
        if self.role is Role.COMBINED:
            return Topic(TopicKind.COMBINED, "")
        if self.role in (Role.JOINT_TOTAL, Role.JOINT_REP):
            return Topic(TopicKind.JOINT, self.name)
        history = {Subject.REP: TopicKind.REP_HISTORY, Subject.PAIR: TopicKind.PAIR_HISTORY,
                   Subject.ACCOUNT: TopicKind.ACCOUNT_HISTORY}
        return Topic(history[self.subject], "")


@dataclass(frozen=True)
class Catalogue:
    """The ordered columns of the model's feature frames (the frame's column order is this order)."""

    columns: tuple[Column, ...]

    @classmethod
    def build(cls, *, dimensions: Iterable[tuple[str, DimensionKind]], rep_attributes: Iterable[tuple[str, bool]],
              account_attributes: Iterable[tuple[str, bool]], joint: bool) -> Catalogue:
        """The catalogue of a feature space.

        Parameters
        ----------
        dimensions : (name, kind) of each strength dimension, in the space's order.
        rep_attributes, account_attributes : (attribute, is categorical) of each static column.
        joint : whether the joint model's columns are present.
        """
        cols = [Column(attribute_column("rep", a), Role.ATTRIBUTE, Subject.REP, attribute=a, categorical=c)
                for a, c in rep_attributes]
        cols += [Column(attribute_column("account", a), Role.ATTRIBUTE, Subject.ACCOUNT, attribute=a, categorical=c)
                 for a, c in account_attributes]
        cols.append(Column("account_log_potential", Role.ATTRIBUTE, Subject.ACCOUNT, attribute="potential"))
        cols += [
            Column("rep_n", Role.VOLUME, Subject.REP), Column("rep_rate", Role.RATE, Subject.REP, monotone=True),
            Column("account_n", Role.VOLUME, Subject.ACCOUNT), Column("account_rate", Role.RATE, Subject.ACCOUNT),
            Column("pair_n", Role.VOLUME, Subject.PAIR), Column("pair_rate", Role.RATE, Subject.PAIR, monotone=True),
        ]
        dims = list(dimensions)
        for d, _kind in dims:
            cols += [Column(f"{d}_strength", Role.STRENGTH, Subject.PAIR, dimension=d, monotone=True),
                     Column(f"{d}_lift", Role.LIFT, Subject.PAIR, dimension=d),
                     Column(f"{d}_n", Role.VOLUME, Subject.PAIR, dimension=d)]
        cols.append(Column("combined_logit", Role.COMBINED, Subject.PAIR, monotone=True))
        if joint:
            cols += [Column("joint_logit", Role.JOINT_TOTAL, Subject.PAIR, monotone=True),
                     Column("joint_rep_logit", Role.JOINT_REP, Subject.REP, monotone=True)]
            cols += [Column(f"{d}_joint", Role.JOINT_DIM, Subject.PAIR, dimension=d, monotone=True) for d, _ in dims]
        out = cls(tuple(cols))
        out._check_unique()
        return out

    def _check_unique(self) -> None:
        seen: set[str] = set()
        twice = [c.name for c in self.columns if c.name in seen or seen.add(c.name)]
        if twice:
            from repfit.errors import ConfigError

            raise ConfigError(f"feature columns {', '.join(map(repr, twice))} would be made twice: a rep or account "
                              "attribute (in reps or accounts) is named like a derived feature. Fix: rename that "
                              "attribute in the mapping, or list it under exclude in the feature spec.")

    # --- queries -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    def select(self, *, role: Role | None = None, subject: Subject | None = None, dimension: str | None = None,
               with_dimension: bool | None = None) -> list[Column]:
        """Columns matching every given criterion (``with_dimension``: has a dimension / has none)."""
        return [c for c in self.columns
                if (role is None or c.role is role) and (subject is None or c.subject is subject)
                and (dimension is None or c.dimension == dimension)
                and (with_dimension is None or (c.dimension is not None) == with_dimension)]

    def one(self, *, role: Role, subject: Subject) -> str:
        """The name of the single column with this role and subject (e.g. the rep's overall rate)."""
        (col,) = self.select(role=role, subject=subject, with_dimension=False)
        return col.name

    def monotone(self, names: Iterable[str]) -> list[int]:
        """LightGBM ``monotone_constraints`` for the columns ``names``: 1 where P(win) may only rise."""
        return [1 if n in self and self[n].monotone else 0 for n in names]

    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.categorical]

    def topic(self, name: str) -> Topic:
        """What a reason built on column ``name`` talks about (the model's ``bias`` has no topic: a KeyError)."""
        return self[name].topic

    def start_parts(self, start: str) -> tuple[list[str], str | None, str | None]:
        """How the log-odds of a booster's start column ``start`` splits back into columns.

        Returns (parts, rep_part, rep_credit): the start equals ``sum(parts) + (rep_part - sum(parts)) + rest``,
        where the rep's own effect ``rep_part - sum(parts)`` is credited to column ``rep_credit`` (the rep's
        overall rate) and the rest (account and intercept) to the bias. A start that is not the joint model's
        total goes whole to the bias: ([], None, None).
        """
        if start not in self or self[start].role is not Role.JOINT_TOTAL:
            return [], None, None
        parts = [c.name for c in self.select(role=Role.JOINT_DIM)]
        return parts, self.one(role=Role.JOINT_REP, subject=Subject.REP), self.one(role=Role.RATE, subject=Subject.REP)

    def volume_columns(self) -> list[str]:
        """The deal counts behind the rep's strengths on the account's values (one per dimension), else the rep's."""
        cols = [c.name for c in self.select(role=Role.VOLUME, with_dimension=True)]
        return cols or [self.one(role=Role.VOLUME, subject=Subject.REP)]


def attribute_column(subject: str, attribute: str) -> str:
    """The model column of a static rep or account attribute."""
    return f"{subject}_{attribute}"
