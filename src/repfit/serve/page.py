"""The workbench page, rendered on the server (Jinja2, autoescaped: ids and reasons are text, never markup)."""

from __future__ import annotations

import threading

from repfit.errors import RepfitError
from repfit.serve.workbench import CONFIDENCE_FILTERS, Workbench

_PLOTS: dict[int, list[tuple[str, str]]] = {}
_PLOTS_LOCK = threading.Lock()


def _band_plots(wb: Workbench) -> list[tuple[str, str]]:
    """SVG plots of each band of the current plan (today and the plan against the band), drawn once per solve."""
    from repfit.assign.plan import band_key
    from repfit.report import band_svg

    res = wb.result
    with _PLOTS_LOCK:
        if id(res) not in _PLOTS:
            plots = []
            for band in res.plan.problem.bands:
                k = band_key(band)
                if f"{k}_target" in res.plan.reps.columns:
                    plots.append((band.metric, band_svg(res.plan.reps, k, band.metric)))
            _PLOTS.clear()
            _PLOTS[id(res)] = plots
        return _PLOTS[id(res)]


GROUPS_SHOWN = 30  # groups listed before "show all" (the API lists every one)


def render(env, wb: Workbench, *, rep=None, region=None, tier=None, confidence=None, q=None, all_groups=False) -> str:
    filters = {"rep": rep or None, "region": region or None, "tier": tier or None,
               "confidence": confidence if confidence in CONFIDENCE_FILTERS else None}
    rows = wb.suggestions(**filters)
    groups: list[dict] = []
    for r in rows:
        if not groups or groups[-1]["group"] != r["group"]:
            groups.append({"group": r["group"], "kind": r["kind"], "gain": r["group_gain"], "moves": []})
        groups[-1]["moves"].append(r)
    more = max(len(groups) - GROUPS_SHOWN, 0) if not all_groups else 0
    if more:
        groups = groups[:GROUPS_SHOWN]
    search, search_error, search_kind = [], None, None
    if q:
        q = q.strip()
        search_kind = "account" if q in set(wb.account_ids) else "rep" if q in set(wb.rep_ids) else None
        if search_kind is None:
            search_error = f"{q!r} is neither an account id nor a rep id of this data."
        else:
            try:
                search = wb.search(**{search_kind: q}, top=5)
            except RepfitError as exc:
                search_error = str(exc)
    book = wb.book()
    tiers = sorted({c[len("tier_"):-len("_today")] for c in book.columns if c.startswith("tier_") and c.endswith("_today")})
    return env.get_template("page.html").render(
        wb=wb, totals=wb.totals(), groups=groups, more=more, filters=filters, shown=len(rows),
        reps=list(wb.rep_ids), regions=sorted(set(wb.region)) if wb.region is not None else [],
        tier_names=sorted(set(wb.tier)), book=book.to_dict("records"), tiers=tiers, bands=wb.bands(),
        plots=_band_plots(wb), q=q or "", search=search, search_kind=search_kind, search_error=search_error,
        scenarios=wb.store.scenarios(), audit=wb.store.audit_log(15), settings=wb.result.settings,
    )
