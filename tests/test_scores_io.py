"""Reading scores files by batch on integer indices (issue 14, point 1 and "bad input at scale")."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from repfit import scores_io
from repfit.errors import SchemaError
from repfit.scores_io import Candidates, read_scores
from repfit.scoring import write_scores

R, A = 7, 23


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(scores_io, "BATCH_ROWS", 10)  # many batches: checks across batch boundaries run


def data(reps=R, accs=A):
    return SimpleNamespace(reps=pd.DataFrame({"rep_id": [f"R{i}" for i in range(reps)]}),
                           accounts=pd.DataFrame({"account_id": [f"A{i}" for i in range(accs)]}))


def frame(P: np.ndarray, order=None) -> pd.DataFrame:
    a, r = np.divmod(np.arange(P.size), P.shape[1])
    df = pd.DataFrame({"rep_id": [f"R{i}" for i in r], "account_id": [f"A{i}" for i in a], "p_win": P.ravel(),
                       "expected_value": P.ravel() * 3.0, "cold": False})
    return df if order is None else df.iloc[order].reset_index(drop=True)


def write(df: pd.DataFrame, path, blocks: int = 4):
    step = -(-len(df) // blocks)
    write_scores((df.iloc[i:i + step] for i in range(0, len(df), step)), path)  # one Parquet row group per block, as repfit score writes
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_shuffled_file_reads_back_into_the_matrix(tmp_path, small_batches, suffix):
    P = np.random.default_rng(0).random((A, R))
    order = np.random.default_rng(1).permutation(P.size)  # any row order: the matrix is filled by index
    M = read_scores(write(frame(P, order), tmp_path / f"s{suffix}"), data())
    assert M.dtype == np.float32 and M.shape == (A, R)
    np.testing.assert_array_equal(M, P.astype(np.float32))


def test_missing_pairs_are_named(tmp_path, small_batches):
    df = frame(np.full((A, R), 0.5)).drop(index=[3, 40])  # (A0, R3) and (A5, R5)
    with pytest.raises(SchemaError, match=r"covers 159 of the 161 \(rep, account\) pairs.*\('A0', 'R3'\), \('A5', 'R5'\)"):
        read_scores(write(df, tmp_path / "s.parquet"), data())


@pytest.mark.parametrize("where", ["same batch", "other row group"])
def test_repeated_pairs_are_named(tmp_path, small_batches, where):
    df = frame(np.full((A, R), 0.5))
    twice = df.iloc[[12]] if where == "same batch" else df.iloc[[150]]
    df = pd.concat([df.iloc[:13], twice, df.iloc[13:]]) if where == "same batch" else pd.concat([twice, df])
    pair = (twice.rep_id.iloc[0], twice.account_id.iloc[0])
    with pytest.raises(SchemaError, match=rf"1 repeated \(rep_id, account_id\) pairs, e.g. \[\('{pair[0]}', '{pair[1]}'\)\]"):
        read_scores(write(df, tmp_path / "s.parquet"), data())


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_unknown_ids_are_named_with_the_other_faults_in_one_message(tmp_path, small_batches, suffix):
    df = frame(np.full((A, R), 0.5))
    df.loc[5, "rep_id"] = "R-ghost"
    df.loc[[60, 61], "account_id"] = "A-ghost"
    with pytest.raises(SchemaError) as err:
        read_scores(write(df, tmp_path / f"s{suffix}"), data())
    msg = str(err.value)
    assert "rep_id values the data does not hold: 'R-ghost'" in msg and "account_id values the data does not hold: 'A-ghost'" in msg
    assert "covers 158 of the 161" in msg and "Fix: score this same data set again" in msg


def test_p_win_out_of_range_is_named_with_its_row(tmp_path, small_batches):
    df = frame(np.full((A, R), 0.5))
    df.loc[77, "p_win"] = 1.5
    with pytest.raises(SchemaError, match=r"column 'p_win' must be numbers in \[0, 1\]; found \[1.5\] \(rows 78 of"):
        read_scores(write(df, tmp_path / "s.parquet"), data())


def test_a_candidates_file_is_refused_where_every_pair_is_needed_and_read_where_not(tmp_path):
    df = frame(np.full((A, R), 0.5)).groupby("account_id").head(2).assign(p_win_left_out=0.5)
    path = write(df, tmp_path / "c.parquet")
    with pytest.raises(SchemaError, match="holds each account's top reps only"):
        read_scores(path, data())
    c = read_scores(path, data(), candidates_ok=True)
    assert isinstance(c, Candidates) and len(c.acc) == 2 * A and c.mask().sum(axis=1).tolist() == [2] * A
    assert np.all(c.left_out == np.float32(0.5))


def test_ids_written_as_numbers_match_the_data_s_string_ids(tmp_path, small_batches):
    """A scores file from another writer may hold integer ids (no dictionary): they are matched as text."""
    P = np.random.default_rng(2).random((A, R))
    df = frame(P).assign(rep_id=lambda d: d.rep_id.str[1:].astype(int), account_id=lambda d: d.account_id.str[1:].astype(int))
    ds = SimpleNamespace(reps=pd.DataFrame({"rep_id": [str(i) for i in range(R)]}),
                         accounts=pd.DataFrame({"account_id": [str(i) for i in range(A)]}))
    df.to_parquet(tmp_path / "s.parquet", index=False)
    np.testing.assert_array_equal(read_scores(tmp_path / "s.parquet", ds), P.astype(np.float32))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_candidates_file_that_lists_some_pairs_but_bounds_none_is_refused(tmp_path, small_batches, suffix):
    """Review 16: an empty ``p_win_left_out`` means "every rep of this account is listed"; on an account that lists
    only some, the file contradicts itself, and `repfit assign` read it as nothing left out and claimed the plan
    certified optimal over all pairs ("every pair of every account is a candidate") while it was not."""
    df = frame(np.random.default_rng(0).random((A, R))).groupby("account_id").head(2).assign(p_win_left_out=0.5)
    df.loc[df.account_id.isin(["A3", "A7"]), "p_win_left_out"] = np.nan
    path = write(df, tmp_path / f"c{suffix}")
    with pytest.raises(SchemaError, match=rf"c\{suffix}: column 'p_win_left_out' is empty for 2 accounts that list "
                                          r"2 of the 7 reps or fewer, e.g. 'A3', 'A7'.*Fix: score"):
        read_scores(path, data(), candidates_ok=True)
    whole = frame(np.full((A, R), 0.5)).assign(p_win_left_out=np.nan)  # every rep listed: nothing left out
    assert np.isnan(read_scores(write(whole, tmp_path / f"w{suffix}"), data(), candidates_ok=True).left_out).all()
