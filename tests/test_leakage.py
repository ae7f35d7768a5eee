"""The leakage guard (issue 12, item 2): it drops a column that leaks the outcome, and keeps ordinary attributes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from repfit.leakage import guard_leakage
from repfit.mapping import Mapping
from repfit.schema import RESERVED, load_dataset


def test_bands_that_pandas_could_read_as_dates_are_no_dates(small_org):
    """'1-10' / '11-50' employee bands: pandas' mixed parser reads '11-50' as November 2050, and the guard dropped
    the column as 'a date after the deal's creation' (review of issue 12). A real later date is still dropped."""
    ds = load_dataset(small_org)
    opps = ds.opportunities
    rng = np.random.default_rng(0)
    opps = opps.assign(size_band=pd.Series(rng.choice(["1-10", "11-50"], len(opps), p=[0.02, 0.98]), dtype="string"),
                       signed_on=(opps["created_at"] + pd.Timedelta(days=30)).dt.strftime("%Y-%m-%d").astype("string"))
    _, _, kept, dropped = guard_leakage(ds.reps, ds.accounts, opps, Mapping(), RESERVED)
    assert [d.column for d in dropped] == ["signed_on"] and "size_band" in kept.columns
