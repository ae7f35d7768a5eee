"""One self-contained HTML report for sales ops and planners: model quality, the proposed assignment's effect
per rep, the trade-off between disruption (moves) and gain, and the top suggestions with their reasons.

Plots are matplotlib figures inlined as SVG: the file opens offline, with no script or font to fetch. A few
lines of inline JavaScript check, once the page is laid out, that every plot was drawn (the SVG has a size
and at least one of its data marks, tagged ``data-N``, is visible) and record the count in
``<body data-plots-drawn>``: the headless-browser test reads it.
"""

from __future__ import annotations

import html
import io
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from repfit import schema as S
from repfit.assign.plan import AssignConfig, Plan, band_key
from repfit.card import ModelCard
from repfit.progress import NO_PROGRESS, Progress

BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#7f7f7f"


# --- figures -----------------------------------------------------------------------------------------
_marks = itertools.count()


def _data(artists):
    """Tag the artists that carry data (not axes, grid, legend or reference lines): the SVG gets an element with
    id ``data-N`` for each, which the in-page check requires to be visible."""
    for a in artists:
        a.set_gid(f"data-{next(_marks)}")
    return artists


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _plain_text() -> None:
    """Ids are text, never TeX (a rep id such as "R$2$"). Text is made when set and when drawn, so this is set for
    the process, not a context."""
    import matplotlib

    matplotlib.rcParams["text.parse_math"] = False


def _figure(w: float, h: float, ncols: int = 1):
    from matplotlib.figure import Figure

    _plain_text()
    fig = Figure(figsize=(w, h))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def calibration_svg(cal: pd.DataFrame) -> str:
    from repfit.training.plots import calibration_figure

    _plain_text()
    return _svg(calibration_figure(cal))


def quality_svg(metrics: dict) -> str:
    names = [n for n in ("repfit", "logistic", "rep_rate", "global_rate") if f"{n}.test.auc" in metrics]
    label = {"repfit": "repfit (LightGBM)", "logistic": "logistic regression", "rep_rate": "rep's overall rate",
             "global_rate": "global win rate"}
    fig, (ax1, ax2) = _figure(8, 2.8, 2)
    y = np.arange(len(names))[::-1]
    colors = [BLUE if n == "repfit" else GREY for n in names]
    auc = [metrics[f"{n}.test.auc"] for n in names]
    _data(ax1.barh(y, auc, color=colors))
    ax1.set(yticks=y, yticklabels=[label[n] for n in names], xlim=(0.5, max(0.55, max(auc) + 0.03)),
            title="AUC on the test period (higher is better)")
    for yi, v in zip(y, auc):
        ax1.text(v, yi, f" {v:.3f}", va="center", fontsize=8)
    ll = [metrics[f"{n}.test.log_loss"] for n in names]
    _data(ax2.barh(y, ll, color=colors))
    ax2.set(yticks=y, yticklabels=[], title="log loss (lower is better)", xlim=(min(ll) * 0.95, max(ll) * 1.02))
    for yi, v in zip(y, ll):
        ax2.text(v, yi, f" {v:.4f}", va="center", fontsize=8)
    return _svg(fig)


def rep_value_svg(per_rep: pd.DataFrame) -> str:
    t = per_rep.sort_values("ev_after", ascending=False, ignore_index=True)
    fig, (ax,) = _figure(9, 3.4)
    x = np.arange(len(t))
    _data(ax.bar(x - 0.2, t.ev_before, width=0.4, color=GREY, label="current"))
    _data(ax.bar(x + 0.2, t.ev_after, width=0.4, color=BLUE, label="proposed"))
    ax.set(ylabel="expected value", title="Expected value per rep, current vs proposed")
    if len(t) <= 60:
        ax.set_xticks(x, t[S.REP_ID], rotation=90, fontsize=7)
    else:
        ax.set(xlabel=f"{len(t)} reps, by proposed expected value")
    ax.legend()
    return _svg(fig)


def tier_mix_svg(per_rep: pd.DataFrame) -> str:
    tiers = [c[len("tier_"):-len("_after")] for c in per_rep.columns if c.startswith("tier_") and c.endswith("_after")]
    t = per_rep.sort_values(S.REP_ID, ignore_index=True)
    fig, axes = _figure(9, 3.2, 2)
    x = np.arange(len(t))
    palette = ["#08519c", "#3182bd", "#6baed6", "#bdd7e7", "#eff3ff", "#fdae6b"]
    for ax, when in zip(axes, ("before", "after")):
        bottom = np.zeros(len(t))
        for i, tier in enumerate(tiers):
            v = t[f"tier_{tier}_{when}"].to_numpy(float)
            _data(ax.bar(x, v, bottom=bottom, color=palette[i % len(palette)], label=f"tier {tier}", width=0.85))
            bottom += v
        ax.set(title=f"Accounts per rep by tier, {'current' if when == 'before' else 'proposed'}", xticks=[])
    axes[0].set_ylabel("accounts")
    axes[1].legend(loc="lower right", fontsize=7)
    return _svg(fig)


def band_svg(per_rep: pd.DataFrame, key: str, label: str) -> str:
    """Each rep's total of a balanced metric, today and in the plan, as a share of its target, with the band drawn."""
    target = per_rep[f"{key}_target"].to_numpy(float)
    ref = np.where(target > 0, target, np.nan)
    t = pd.DataFrame({"rep": per_rep[S.REP_ID], "before": per_rep[f"{key}_before"] / ref,
                      "after": per_rep[f"{key}_after"] / ref, "lower": per_rep[f"{key}_lower"] / ref,
                      "upper": per_rep[f"{key}_upper"] / ref}).sort_values("after", ignore_index=True)
    fig, (ax,) = _figure(9, 3.2)
    x = np.arange(len(t))
    _data([ax.fill_between(x, t.lower, t.upper, step="mid", color=BLUE, alpha=0.12, label="band")])
    _data([ax.scatter(x, t.before, s=12, color=GREY, label="current", zorder=3)])
    _data([ax.scatter(x, t.after, s=14, color=BLUE, label="proposed", zorder=4)])
    ax.axhline(1.0, color="#555555", lw=0.8, ls=":")
    ax.set(ylabel="total / target", title=f"{label}: each rep's total against its target and band")
    if len(t) <= 60:
        ax.set_xticks(x, t["rep"], rotation=90, fontsize=7)
    else:
        ax.set(xlabel=f"{len(t)} reps, by proposed total / target")
    ax.legend(loc="upper left", fontsize=7)
    return _svg(fig)


def _band_parts(r) -> list[str]:
    """The balance section: per band, each rep's total against its band, and the price of the band."""
    s, bands = r.plan.summary, r.plan.problem.bands
    if not bands:
        return []
    parts = ["<h2>Balance bands</h2>", "<p>Each rep's total of a balanced metric is held within its band around its "
             "target (its share of the total, by quota or capacity). The price of a band is the uplift the plan "
             "gives up for it: the best uplift without that band minus this plan's.</p>"]
    rows = []
    for band, b in zip(bands, s.bands):
        key = band_key(band)
        if f"{key}_target" in r.plan.reps.columns:
            parts.append(_fig(f"band_{key}", band_svg(r.plan.reps, key, band.metric),
                              f"{band.metric}: band +-{b.tolerance:.0%} of each rep's target; grey today, blue the plan."))
        rows.append({"band": f"{b.metric} +-{b.tolerance:.0%}" if b.tolerance is not None else f"{b.metric} (limit)",
                     "reps outside today": b.reps_outside_before, "reps outside in the plan": b.reps_outside_after,
                     "price (uplift given up)": b.price})
    parts.append(_table(pd.DataFrame(rows), {"price (uplift given up)": "+,.2f"}))
    return parts


def budget_svg(curve: pd.DataFrame, chosen_moves: int | None, unit: str) -> str:
    fig, (ax,) = _figure(6.5, 3.6)
    _data(ax.plot(curve.moves, curve.uplift, marker="o", color=BLUE))
    ax.set(xlabel="accounts moved (move budget)", ylabel=f"uplift in {unit}",
           title="Uplift vs move budget (each point optimal for its move count)")
    if chosen_moves is not None:
        ax.axvline(chosen_moves, color=ORANGE, ls="--", lw=1, label=f"this plan: {chosen_moves} moves")
        ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _svg(fig)


# --- the page --------------------------------------------------------------------------------------
@dataclass
class ReportInput:
    title: str
    model_uri: str
    model_version: str | None
    card: ModelCard
    plan: Plan
    curve: pd.DataFrame
    suggestions: pd.DataFrame
    data_summary: dict


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _table(df: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            text = format(v, formats[c]) if c in formats and isinstance(v, (int, float, np.number)) and pd.notna(v) else v
            cells.append(f"<td>{_e('' if text is None or (isinstance(text, float) and np.isnan(text)) else text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
.kpi{display:flex;gap:1rem;flex-wrap:wrap}.kpi div{background:#f4f6f8;border-radius:6px;padding:.6rem 1rem}
.kpi b{display:block;font-size:1.3rem}.warn{background:#fff3cd;border:1px solid #e0c060;padding:.7rem 1rem;border-radius:6px}
.ok{background:#e8f5e9;border:1px solid #8bc34a;padding:.7rem 1rem;border-radius:6px}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f8}figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#555}
"""

CHECK_JS = """
window.addEventListener('load', function () {
  var figs = document.querySelectorAll('figure[data-plot]'), drawn = 0;
  figs.forEach(function (f) {
    var svg = f.querySelector('svg'), ok = false;
    if (svg) {
      var box = svg.getBoundingClientRect(), visible = 0;
      svg.querySelectorAll('[id^="data-"]').forEach(function (m) {
        var b = m.getBoundingClientRect();
        if (b.width > 0 && b.height > 0) visible++;
      });
      ok = box.width > 50 && box.height > 50 && visible > 0;  // laid out, with at least one visible data mark
    }
    f.setAttribute('data-drawn', ok ? 'yes' : 'no');
    if (ok) drawn++;
  });
  document.body.setAttribute('data-plots-expected', String(figs.length));
  document.body.setAttribute('data-plots-drawn', String(drawn));
});
"""


def _fig(name: str, svg: str, caption: str) -> str:
    return f'<figure data-plot="{_e(name)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def render(r: ReportInput) -> str:
    s, m, sig = r.plan.summary, r.card.test_metrics, r.card.signal
    parts = [f"<h1>{_e(r.title)}</h1>",
             f"<p>Model <code>{_e(r.model_uri)}</code> (version {_e(r.model_version or '-')}); "
             f"{r.data_summary['reps']:,} reps, {r.data_summary['accounts']:,} accounts, "
             f"{r.data_summary['closed_opportunities']:,} closed opportunities "
             f"({_e(r.data_summary['first_date'])} .. {_e(r.data_summary['last_date'])}).</p>"]
    if sig.detected:
        parts.append(f'<p class="ok">Rep strengths were borne out on the test period: knowing which rep works a deal '
                     f'improves log loss by {sig.log_loss_gain:+.4f} (90% bootstrap {sig.gain_p05:+.4f} '
                     f'.. {sig.gain_p95:+.4f}).</p>')
    else:
        parts.append('<p class="warn"><b>Rep strengths were NOT borne out on the test period.</b> The model finds no '
                     'rep-account signal it can stand behind; treat the reassignments below as noise.</p>')
    parts.append('<div class="kpi">' + "".join(
        f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in (
            ("expected value, current", f"{s.expected_value_current:,.0f}"),
            ("expected value, proposed", f"{s.expected_value_proposed:,.0f}"),
            ("uplift", f"{s.uplift:+,.0f} ({s.uplift_pct:+.1f}%)"),
            ("moves", f"{s.moves:,}"),
            ("solver", f"{s.solver} ({'certified optimal' if s.certified_optimal else 'not certified'})"))) + "</div>")

    parts.append("<h2>Model quality</h2>")
    parts.append(_fig("calibration", calibration_svg(r.card.calibration_table),
                      "Predicted P(win) against the observed win rate, on the validation and test periods."))
    if m:
        parts.append(_fig("quality", quality_svg(m), "The model against simple baselines on the same, latest period."))

    parts.append("<h2>Per rep: expected value and tier mix</h2>")
    parts.append(_fig("rep_value", rep_value_svg(r.plan.reps), "Each rep's total expected value before and after."))
    parts.append(_fig("tier_mix", tier_mix_svg(r.plan.reps), "How many accounts of each tier each rep holds."))
    spread = pd.DataFrame([{"measure": k, "current min": s.spread_before[k].min, "current max": s.spread_before[k].max,
                            "current CV": s.spread_before[k].cv, "proposed min": a.min, "proposed max": a.max,
                            "proposed CV": a.cv} for k, a in s.spread_after.items()])
    parts.append(_table(spread, {c: ",.1f" for c in spread.columns if "CV" not in c} | {c: ".3f" for c in spread.columns if "CV" in c}))
    parts += _band_parts(r)

    parts.append("<h2>Disruption vs gain</h2>")
    unit = "expected value" if s.objective == "expected_value" else "expected wins"
    exact = not r.plan.problem.weighted_bands()
    point = ("each point is the optimum for its move count; the lines between points are upper bounds" if exact else
             "under weighted balance bands each point is the balance solver's plan for its keep bonus, within its "
             "stated gap of the optimum")
    parts.append(_fig("budget", budget_svg(r.curve, s.moves, unit),
                      f"Best uplift in {unit} for each number of accounts moved ({point}). Under the same constraints as "
                      "the plan above."))
    parts.append(_table(r.curve[["moves", "uplift", "keep_bonus"]], {"uplift": "+,.2f", "keep_bonus": ",.4g"}))

    parts.append("<h2>Top suggestions</h2>")
    if r.suggestions.empty:
        parts.append("<p>No reassignment would raise expected value.</p>")
    else:
        cols = ["rank", "group", "group_gain", S.ACCOUNT_ID, "from_rep_id", "to_rep_id", "p_win_from", "p_win_to", "gain",
                "confidence", "reasons"]
        parts.append(_table(r.suggestions[cols], {"group_gain": "+,.0f", "gain": "+,.0f", "p_win_from": ".2f", "p_win_to": ".2f"}))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(r.title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>\n{body}\n<script>{CHECK_JS}</script></body></html>\n")


def build(ctx, *, options: AssignConfig, top: int, model_uri: str, model_version: str | None, title: str,
          progress: Progress = NO_PROGRESS) -> tuple[str, Plan, pd.DataFrame]:
    """The report's HTML for a suggestion context (data, model, P(win)) under assignment ``options``, with
    the plan and the trade-off curve it shows (computed on the plan's own problem)."""
    from repfit.assign.plan import plan_assignment
    from repfit.assign.solvers import budget_curve
    from repfit.suggest import for_all

    plan = plan_assignment(ctx.ds, ctx.p_win, options)
    progress.stage("trade-off curve")
    curve = budget_curve(plan.problem)
    progress.stage("suggestions")
    table, _ = for_all(ctx, options, plan=plan)
    keep = table[table["rank"] <= top] if len(table) else table
    progress.stage("plots")
    page = render(ReportInput(title, model_uri, model_version, ctx.scorer.card, plan, curve, keep, ctx.ds.summary()))
    return page, plan, curve


def headcount_svg(added: pd.DataFrame, base_value: float, like: str) -> str:
    """Total expected value against reps added: the diminishing returns of headcount."""
    fig, (ax,) = _figure(6, 3.4)
    x = np.concatenate([[0], added.reps_added]) if np.isfinite(base_value) else added.reps_added.to_numpy()
    y = np.concatenate([[base_value], added.total_value]) if np.isfinite(base_value) else added.total_value.to_numpy()
    _data(ax.plot(x, y, marker="o", color=BLUE))
    ax.set(xlabel=f"reps added (each like {like})", ylabel="best total expected value",
           title="Value of more headcount (diminishing returns)", xticks=x)
    ax.grid(alpha=0.3)
    return _svg(fig)
