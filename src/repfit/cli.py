"""Command-line interface: parse options, call one library function, print the result.

Only this module reads paths from the user and turns ``RepfitError`` into a one-line message and
a non-zero exit code (no traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from repfit.config import BLOCK_PAIRS
from repfit.errors import RepfitError


class _Group(click.Group):
    def invoke(self, ctx):
        from repfit.io import reset_protected

        reset_protected()
        try:
            return super().invoke(ctx)
        except RepfitError as exc:
            click.echo(f"error: {_flag_prefix(exc)}{exc}", err=True)
            ctx.exit(exc.exit_code)


def _flag_prefix(exc: RepfitError) -> str:
    """The command-line flag of the setting an error is about (the library names settings, not flags)."""
    return f"--{exc.option.replace('_', '-')}: " if exc.option else ""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="repfit")
def app() -> None:
    """repfit: recommend which sales rep should own which account.

    \b
    Example:
      repfit synth --out demo/org --reps 40 --accounts 2000 --seed 7
      repfit validate --data demo/org
    """


def _stash(ctx: click.Context, param: click.Parameter, value):
    """Options every data-loading command shares, kept aside for ``_sources`` (not passed to each command)."""
    ctx.meta[param.name] = value
    return value


def _data_option(f):
    rows = [
        click.option("--max-rejected-share", type=click.FloatRange(0, 1), default=None, expose_value=False,
                     callback=_stash, help="With quarantine: stop if more than this share of rows would be set aside. "
                     "Default: the mapping's [rows], else 0.2."),
        click.option("--rejected", type=click.Path(dir_okay=False, path_type=Path), default=None, expose_value=False,
                     callback=_stash, help="Where rows set aside go (CSV with line and reason). Default: "
                     "rejected_rows.csv in the working directory."),
        click.option("--on-bad-rows", type=click.Choice(["strict", "quarantine"]), default=None, expose_value=False,
                     callback=_stash, help="A bad opportunity row (close before create, bad date, unknown stage, "
                     "repeated id, no rep or account...): strict stops; quarantine sets it aside and goes on. "
                     "Default: the mapping's [rows] on_bad, else strict."),
        click.option("--mapping", default=None, metavar="FILE|PRESET",
                     help="Column mapping: a repfit.toml, or a preset for a CRM export: hubspot, salesforce "
                     "(repfit mapping show NAME prints it). Default: repfit.toml in DATA (or beside it) if present."),
        click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
                     help="A directory holding reps, accounts and opportunities (.csv or .parquet; reps and accounts "
                     "may be absent), or one CRM export file of deals/opportunities."),
    ]
    for option in rows:
        f = option(f)
    return f


@app.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory.")
@click.option("--reps", "n_reps", default=40, show_default=True, type=click.IntRange(min=1), help="Number of reps.")
@click.option("--accounts", "n_accounts", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Number of accounts.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same files).")
# The choices are repfit.synth.FORMATS (tests/test_synth_export.py checks): only this command may import the generator.
@click.option("--format", "fmt", type=click.Choice(("contract", "hubspot", "salesforce")), default="contract",
              show_default=True, help="contract: the three tables. hubspot / salesforce: the same org as one CRM "
              "export file with planted dirty rows, read by the preset of that name.")
def synth(out: Path, n_reps: int, n_accounts: int, seed: int, fmt: str) -> None:
    """Generate a synthetic org with known ground truth (in OUT/truth/).

    With --format hubspot or salesforce the same org (same seed, same deals and outcomes) is written as
    one CRM export (OUT/deals.csv, OUT/opportunity_report.csv) with a known number of dirty rows of each
    kind (OUT/truth/dirty_rows.json); OUT/truth/org/ holds the three tables its clean rows load into.

    \b
    Example:
      repfit synth --out demo/org --reps 40 --accounts 2000 --seed 7
      repfit synth --out demo/hubspot --reps 40 --accounts 2000 --seed 7 --format hubspot
    """
    from repfit.synth import write_export, write_org

    if fmt == "contract":
        counts = write_org(out, n_reps, n_accounts, seed)
        tables = ", ".join(f"{n:,} {t}" for t, n in counts.items())
        click.echo(f"wrote {out}: {tables}; truth in {out / 'truth'}")
        return
    got = write_export(out, n_reps, n_accounts, seed, fmt)
    dirty = ", ".join(f"{n} {kind}" for kind, n in got["dirty"].items())
    click.echo(f"wrote {got['file']}: {got['rows']:,} rows = {got['deals']:,} deals ({got['reps']:,} reps, "
               f"{got['accounts']:,} accounts) + {sum(got['dirty'].values())} planted dirty rows ({dirty}); "
               f"truth in {out / 'truth'} (the org it loads into: {out / 'truth' / 'org'})")


@app.command()
@_data_option
def validate(data_dir: Path, mapping: str | None) -> None:
    """Load the data through the contract and print counts and findings (rows set aside, columns the
    leakage guard dropped).

    \b
    Example:
      repfit validate --data demo/org
      repfit validate --data deals.csv --mapping hubspot --on-bad-rows quarantine
      repfit validate --data ../shared/data/crm_sales_opportunities --mapping examples/maven_crm/repfit.toml
    """
    ds = _data_source(data_dir, mapping, announce_dropped=False).load()
    click.echo(format_summary(ds.summary(), ds.warnings))


def _tracking_option(f):
    return click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                        help="MLflow tracking URI. Default: the embedded store sqlite:///<root>/mlruns/mlflow.db.")(f)


_MODEL_HELP = "Model: models:/NAME@ALIAS, models:/NAME/VERSION or a models/*.joblib bundle. Default: the registered champion."


def _pair_source_options(f):
    """--scores / --model: where P(win) of every pair comes from."""
    f = click.option("--model", "model_uri", default=None, help=_MODEL_HELP)(f)
    return click.option("--scores", type=click.Path(path_type=Path), default=None,
                        help="Scores from `repfit score` (a file, or the directory of parts `--dask` writes). "
                             "Default: score now with --model.")(f)


def _assign_options(*names: str):
    """The assignment options (``AssignConfig``) a command takes, declared once: choices and defaults come
    from the code. ``names``: which of them (default: all but objective and solver)."""
    from repfit.assign.plan import PRICE_TIME_LIMIT
    from repfit.assign.solvers import BALANCE_TIME_LIMIT, MILP_TIME_LIMIT, SOLVERS
    from repfit.config import OBJECTIVES, AssignConfig

    d = AssignConfig()
    declared = {
        "objective": click.option("--objective", type=click.Choice(OBJECTIVES), default=d.objective, show_default=True,
                                  help="Maximise total expected value (p_win x potential) or expected wins."),
        "require_match": click.option("--require-match", multiple=True, metavar="ATTR",
                                      help="Reps may only own accounts with the same value of ATTR (repeatable), e.g. region."),
        "balance": click.option("--balance", multiple=True, default=d.balance, show_default=True, metavar="METRIC=TOL",
                                help="Each rep's total of METRIC within +-TOL of its target (its share by quota, else "
                                "by capacity); repeatable. METRIC: accounts, potential, expected_value, workload or a "
                                "numeric account column, e.g. --balance potential=10% --balance accounts=10%. "
                                "'none': no band."),
        "balance_tiers": click.option("--balance-tiers", is_flag=True,
                                      help="Each rep's count per tier stays within one of its fair share."),
        "capacity_unit": click.option("--capacity-unit", type=click.Choice(["accounts", "workload"]),
                                      default=d.capacity_unit, show_default=True,
                                      help="A rep's capacity counts accounts, or workload units (the accounts' "
                                      "workload column, default 1 each)."),
        "split_families": click.option("--split-families", is_flag=True,
                                       help="Accounts sharing a parent_account_id may go to different reps (default: "
                                       "a family goes to one rep together)."),
        "continuity": click.option("--continuity", default=d.continuity, show_default=True, type=click.FloatRange(min=0),
                                   help="Bonus of W x value for keeping an account's current rep."),
        "max_moves": click.option("--max-moves", default=d.max_moves, type=click.IntRange(min=0),
                                  help="At most K accounts change rep (exact)."),
        "solver": click.option("--solver", type=click.Choice(["auto", *SOLVERS]), default=d.solver, show_default=True,
                               help="Exact solver; auto picks by size and constraints."),
        "time_limit": click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=d.time_limit,
                                   metavar="SECONDS",
                                   help=f"Seconds for the solves of weighted bands (potential, workload...), band "
                                   f"prices included: past it the milp and balance solvers give their best assignment "
                                   f"and its proven gap. Default: {MILP_TIME_LIMIT:g} for milp, {BALANCE_TIME_LIMIT:g} "
                                   f"for balance, plus {PRICE_TIME_LIMIT:g} per band price."),
    }
    chosen = names or ("require_match", "balance", "balance_tiers", "capacity_unit", "split_families", "continuity",
                       "max_moves", "time_limit")

    def decorate(f):
        for name in reversed(chosen):
            f = declared[name](f)
        return f

    return decorate


def _assign_config(kw: dict):
    """Pop the assignment options out of a command's keyword arguments into one ``AssignConfig``."""
    from dataclasses import fields

    from repfit.config import AssignConfig

    given = {f.name: kw.pop(f.name) for f in fields(AssignConfig) if f.name in kw}
    for name in ("require_match", "balance"):
        if name in given:
            given[name] = tuple(given[name])
    return AssignConfig(**given)


class TerminalProgress:
    """Stages as '  .. name' lines and tqdm bars, on stderr (stdout keeps only results)."""

    def stage(self, name: str) -> None:
        click.echo(f"  .. {name}", err=True)

    def bar(self, total: int, *, unit: str = "pair", desc: str = "scoring"):
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, unit_scale=unit == "pair", desc=desc, file=sys.stderr, leave=False,
                    disable=None, mininterval=0.5)


def _data_source(data_dir: Path, mapping: str | None, announce_dropped: bool = True):
    from repfit.jobs import DataSource

    meta = click.get_current_context().meta
    return DataSource(data_dir, mapping, on_bad_rows=meta.get("on_bad_rows"),
                      max_rejected_share=meta.get("max_rejected_share"), rejected=meta.get("rejected"),
                      notify=lambda line: click.echo(line, err=True), announce_dropped=announce_dropped)


def _sources(data_dir: Path, mapping: str | None, tracking_uri: str | None):
    from repfit.jobs import Store

    return _data_source(data_dir, mapping), Store(tracking_uri, Path.cwd())


@app.command()
@_data_option
@click.option("--features", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Feature spec (TOML). Default: built-in, as in features/default.toml.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Training config (TOML). Default: built-in, as in training/default.toml.")
@_tracking_option
@click.option("--promote", is_flag=True, help="Make the new model the champion even if it does not beat the current one.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True,
              help="Where to export the joblib bundle (for use without a tracking server).")
def train(data_dir, mapping, features, config, tracking_uri, promote, models_dir) -> None:
    """Train the win-probability model, evaluate it on the latest period against baselines, and register it.

    The new version gets alias 'challenger' and becomes 'champion' only if its test log loss beats the
    current champion's on the same test rows (or there is none, or --promote).

    \b
    Example:
      repfit train --data demo/org
      repfit train --data demo/org --config training/default.toml --promote
      MLFLOW_TRACKING_URI=sqlite:///tmp/store.db repfit train --data demo/org
    """
    from repfit.jobs import train_job

    data, store = _sources(data_dir, mapping, tracking_uri)
    out = train_job(data=data, store=store, features=features, config=config, promote=promote, models_dir=models_dir,
                    progress=TerminalProgress())
    click.echo(format_training(out))


def _engines():
    from repfit.compiled import ENGINES

    return ENGINES


@app.command()
@_data_option
@click.option("--model", "model_uri", default=None, help=_MODEL_HELP)
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output file (.parquet, or .csv to open in a spreadsheet); with --dask a directory of Parquet parts.")
@click.option("--block-pairs", default=BLOCK_PAIRS, type=click.IntRange(min=1000),
              help=f"Pairs scored per block: bounds memory. Default: {BLOCK_PAIRS:,}.")
@click.option("--trees", "engine", type=click.Choice(_engines()), default=_engines()[0], show_default=True,
              help="How the trees are evaluated: compiled to machine code (lleaves; compiled once per model and "
                   "cached), LightGBM's own predict, or auto: compiled when already cached or the run is large.")
@click.option("--dask", default=None, metavar="ADDRESS",
              help="Score on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for N worker processes "
                   "on this machine. OUT becomes a directory of Parquet parts that every worker must be able to write.")
@click.option("--top-k", "top_k", default=None, type=click.IntRange(min=1),
              help="Write each account's K best reps (by expected value minus rep prices from a 5% sample of "
              "accounts) plus its current rep, and bounds on what it left out, instead of every pair; `repfit "
              "assign` proves its plan from those bounds or states the gap.")
@click.option("--plan", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="With --top-k: a plan `repfit assign` made from candidates (its rep prices are read from "
                   "PLAN_prices.csv beside it). Ranks by those prices instead of a sample's and keeps each account's "
                   "rep in that plan: a second pass that often lets assign prove its plan optimal.")
@_tracking_option
def score(data_dir, mapping, model_uri, out, block_pairs, engine, dask, top_k, plan, tracking_uri) -> None:
    """Score the win probability of every rep x account pair, streamed in blocks.

    Writes rep_id, account_id, p_win, expected_value (= p_win x potential), cold (the rep has no closed deal
    yet), and OUT.json naming the model and fingerprinting the data scored. Reps and accounts new since
    training are scored from their attributes and the history the data holds.

    \b
    Example:
      repfit score --data demo/org --out demo/scores.parquet
      repfit score --data demo/org --model models:/repfit-winprob/3 --out demo/scores.csv
      repfit score --data demo/org --dask local:2 --out demo/scores_parts.parquet
      repfit score --data demo/org --top-k 20 --out demo/candidates.parquet
      repfit assign --data demo/org --scores demo/candidates.parquet --out demo/plan.csv
      repfit score --data demo/org --top-k 20 --plan demo/plan.csv --out demo/candidates2.parquet
    """
    from repfit.jobs import score_job

    data, store = _sources(data_dir, mapping, tracking_uri)
    res = score_job(data=data, store=store, out=out, model_uri=model_uri, block_pairs=block_pairs, engine=engine,
                    dask=dask, progress=TerminalProgress(), top_k=top_k, plan=plan)
    if res.note:
        click.echo(res.note, err=True)
    where = f"{res.out} ({res.parts} parts from {res.workers} Dask workers)" if res.parts is not None else f"{res.out}"
    click.echo(f"scored {res.pairs:,} pairs in {res.seconds:.1f} s ({res.pairs / max(res.seconds, 1e-9):,.0f} pairs/s, "
               f"trees: {res.engine}) with {res.model_uri} (version {res.model_version}) -> {where}; run {res.run_id}")


@app.command()
@_data_option
@_pair_source_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="assignment.csv; OUT_reps.csv and OUT_summary.json are written beside it.")
@_assign_options("objective", "require_match", "balance", "balance_tiers", "capacity_unit", "split_families",
                 "continuity", "max_moves", "solver", "time_limit")
@_tracking_option
def assign(data_dir, mapping, scores, model_uri, out, tracking_uri, **options) -> None:
    """Propose the assignment of accounts to reps that maximises expected value, exactly.

    Every account gets one rep, no rep exceeds its capacity, locked accounts keep their rep; optional
    region matching, tier balance, continuity bonus and a move budget. Infeasible constraints stop
    before solving with the shortfall and the fix.

    \b
    Example:
      repfit assign --data demo/org --scores demo/scores.parquet --out demo/assignment.csv
      repfit assign --data demo/org --out demo/assignment.csv --require-match region --balance-tiers --max-moves 200
      repfit assign --data demo/org --scores demo/scores.parquet --out demo/assignment.csv \\
        --balance potential=10% --balance accounts=10% --time-limit 240
    """
    from repfit.assign.plan import format_plan
    from repfit.jobs import PairSource, assign_job

    data, store = _sources(data_dir, mapping, tracking_uri)
    res = assign_job(data=data, store=store, pairs=PairSource(scores, model_uri), options=_assign_config(options),
                     out=out, progress=TerminalProgress())
    click.echo(format_plan(res.plan.summary))
    click.echo("wrote " + ", ".join(str(p) for p in res.paths.values()) + f"; run {res.run_id}")


@app.command()
@_data_option
@click.option("--account", default=None, help="Suggest reps for this account_id.")
@click.option("--rep", default=None, help="Suggest accounts for this rep_id to take on and hand over.")
@click.option("--all", "all_", is_flag=True, help="The moves of the optimal assignment, grouped and ranked by gain.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1), help="Suggestions per account / rep.")
@_assign_options()
@_pair_source_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table (.csv opens safely in a spreadsheet, or .parquet).")
@_tracking_option
def suggest(data_dir, mapping, account, rep, all_, top, scores, model_uri, out, tracking_uri, **options) -> None:
    """Ranked reassignment suggestions with the expected gain and the reasons in plain words.

    Each suggestion is marked 'confident' only if the model's rep strengths were borne out on its test
    period and the gain in P(win) exceeds twice its standard error; otherwise 'within the model's uncertainty'.
    The assignment options apply with --all (as in `repfit assign`).

    \b
    Example:
      repfit suggest --data demo/org --account A00042
      repfit suggest --data demo/org --rep R007 --top 10
      repfit suggest --data demo/org --all --max-moves 50 --out demo/suggestions.csv
    """
    from repfit.jobs import PairSource, SuggestMode, SuggestRequest, suggest_job

    if sum([account is not None, rep is not None, all_]) != 1:
        raise click.UsageError("give exactly one of --account ID, --rep ID or --all.")
    mode = SuggestMode.ACCOUNT if account is not None else SuggestMode.REP if rep is not None else SuggestMode.ALL
    data, store = _sources(data_dir, mapping, tracking_uri)
    res = suggest_job(data=data, store=store, pairs=PairSource(scores, model_uri),
                      request=SuggestRequest(mode, account if account is not None else rep, top),
                      options=_assign_config(options), out=out, progress=TerminalProgress())
    click.echo(format_suggestions(res))


@app.command()
@_data_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The HTML file to write.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=1), help="Suggestions (groups of moves) to list.")
@click.option("--title", default="repfit: who should own which account", show_default=True, help="Report title.")
@_assign_options()
@_pair_source_options
@_tracking_option
def report(data_dir, mapping, out, top, title, scores, model_uri, tracking_uri, **options) -> None:
    """Write one self-contained HTML report (opens offline): model quality, per-rep value and tier mix before
    and after, the uplift as a function of the move budget, and the top suggestions with their reasons.

    \b
    Example:
      repfit report --data demo/org --out demo/report.html
      repfit report --data demo/org --out demo/report.html --balance-tiers --max-moves 200
    """
    from repfit.jobs import PairSource, report_job

    data, store = _sources(data_dir, mapping, tracking_uri)
    res = report_job(data=data, store=store, pairs=PairSource(scores, model_uri), options=_assign_config(options),
                     out=out, top=top, title=title, progress=TerminalProgress())
    s = res.summary
    click.echo(f"wrote {res.out}: uplift {s.uplift:+,.0f} ({s.uplift_pct:+.2f}%) with {s.moves:,} moves; "
               f"trade-off curve of {len(res.curve)} "
               f"{'points within the solver gap' if s.gap else 'optimal points'}; run {res.run_id}")
    if not res.signal:
        click.echo("note: the model's rep strengths were NOT borne out on its test period; the report says so.")


@app.command()
@_data_option
@click.option("--add", default=3, show_default=True, type=click.IntRange(min=1, max=50),
              help="Evaluate adding 1..N reps (beyond any needed to cover a shortfall).")
@click.option("--like", default=None, metavar="REP_ID",
              help="Profile of the added reps: a copy of this rep (its win rates, capacity, region). Default: the median rep.")
@_assign_options("require_match", "balance", "capacity_unit", "split_families", "time_limit")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("capacity.csv"), show_default=True,
              help="Rep values (CSV); OUT_added.csv, OUT_added.svg and OUT_summary.json are written beside it.")
@_pair_source_options
@_tracking_option
def capacity(data_dir, mapping, add, like, out, scores, model_uri, tracking_uri, **options) -> None:
    """Headcount check: can the reps cover the accounts (shortfall), the expected value lost if each rep left
    (ranked), and the expected value of 1..N more reps (diminishing returns). Every figure is an exact optimum.

    \b
    Example:
      repfit capacity --data demo/org --out demo/capacity.csv
      repfit capacity --data demo/org --add 5 --like R007 --out demo/capacity.csv
    """
    from repfit.capacity import format_headcount
    from repfit.jobs import PairSource, capacity_job

    data, store = _sources(data_dir, mapping, tracking_uri)
    res = capacity_job(data=data, store=store, pairs=PairSource(scores, model_uri), options=_assign_config(options),
                       out=out, add=add, like=like, progress=TerminalProgress())
    click.echo(format_headcount(res.result))
    click.echo("wrote " + ", ".join(str(p) for p in res.paths.values()) + f"; run {res.run_id}")


@app.command()
@_data_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any other than this machine's loopback needs --token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file for decisions, scenarios and the audit log. Default: workbench/<data>-<hash>.db beside "
              "mlruns/ (never inside the data directory).")
@click.option("--token", default=None, envvar="REPFIT_TOKEN", show_envvar=True,
              help="Every request must carry it (Authorization: Bearer TOKEN; the page: open it once with ?token=TOKEN).")
@_assign_options()
@_pair_source_options
@_tracking_option
def serve(data_dir, mapping, host, port, store_path, token, scores, model_uri, tracking_uri, **options) -> None:
    """The ops workbench: review, adjust and approve suggestions in a browser, with a JSON API (OpenAPI at /docs).

    Prepares the champion model's suggestions for DATA under the assignment options (what-ifs change the move
    budget, bands, locks and capacities from the page), then serves until Ctrl-C. Decisions, scenarios and the
    audit log persist in --store; each CSV export is also logged as an MLflow run.

    \b
    Example:
      repfit serve --data demo/org --scores demo/scores.parquet --balance-tiers --max-moves 200
      REPFIT_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') repfit serve --data demo/org --host 0.0.0.0
    """
    import signal

    from repfit.jobs import PairSource
    from repfit.serve.server import check_host, check_port, make_app, prepare, run

    check_host(host, token)
    check_port(host, port)
    data, store = _sources(data_dir, mapping, tracking_uri)
    prepared = prepare(data=data, store=store, pairs=PairSource(scores, model_uri), options=_assign_config(options),
                       store_path=store_path, progress=TerminalProgress())
    wb = prepared.workbench
    t = wb.totals()
    click.echo(f"{t['suggestions']:,} suggested moves in {t['groups']:,} groups, uplift {_gain(t['plan_uplift'])}; "
               f"decisions in {prepared.store_path}")
    app_ = make_app(prepared, token=token, data_dir=str(data_dir), host=host)
    shown = f"[{host}]" if ":" in host else host
    try:
        run(app_, host, port, on_ready=lambda: click.echo(
            f"serving the workbench at http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops", err=True))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # SIGTERM (see main): uvicorn has finished the requests in flight; a clean stop too
        if exc.code != 128 + signal.SIGTERM:
            raise
    click.echo("stopped; every acknowledged decision is in " + str(prepared.store_path), err=True)


@app.group("mapping")
def mapping_group() -> None:
    """Mappings (repfit.toml) for CRM exports: print a preset, or guess one from an export.

    \b
    Example:
      repfit mapping show hubspot > repfit.toml
      repfit mapping guess deals.csv --out repfit.toml
    """


@mapping_group.command("show")
@click.argument("name")
def mapping_show(name: str) -> None:
    """Print the preset NAME (e.g. hubspot) as TOML, to use as is or to copy and edit.

    \b
    Example:
      repfit mapping show salesforce > repfit.toml
    """
    from repfit.mapping import preset_text

    click.echo(preset_text(name), nl=False)


@mapping_group.command("guess")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the mapping to this file (atomically) instead of printing it.")
def mapping_guess(file: Path, out: Path | None) -> None:
    """Guess a starter repfit.toml for FILE, a deals/opportunities export (CSV or Parquet).

    Each line of the guess says what it rests on; lines marked UNSURE need a look, and a required column
    nothing matched is commented out (and named on stderr).

    \b
    Example:
      repfit mapping guess deals.csv > repfit.toml
      repfit mapping guess deals.csv --out repfit.toml
    """
    from repfit.guess import guess

    res = guess(file, out)
    for warning in res.warnings:
        click.echo(f"warning: {warning}", err=True)
    if out is None:
        click.echo(res.text, nl=False)
    else:
        mapped = sum(p.column is not None for p in res.picks.values())
        click.echo(f"wrote {res.path}: {mapped} columns mapped, {res.unsure} lines marked UNSURE")


def _gain(x: float, sign: bool = True) -> str:
    """Money-like values as whole numbers; small ones (expected wins, potential 1) with three significant digits."""
    s = "+" if sign else ""
    return format(x, f"{s},.0f") if abs(x) >= 100 else format(x, f"{s}.3g")


SHOW_GROUPS = 20  # groups of moves printed by `suggest --all`; --out gets them all


def format_suggestions(res) -> str:
    from repfit.jobs import SuggestMode

    t = res.table
    lines = [f"suggestions for {res.request.label}: {len(t)}"]
    if not res.signal:
        lines.append("note: the model's rep strengths were NOT borne out on its test period; every suggestion below is "
                     "within the model's uncertainty.")
    if t.empty:
        lines.append("no reassignment would raise expected value.")
        return "\n".join(lines)
    show = {SuggestMode.ALL: _all_lines, SuggestMode.ACCOUNT: _account_lines, SuggestMode.REP: _rep_lines}
    return "\n".join(lines + show[res.request.mode](res))


def _all_lines(res) -> list[str]:
    t, lines = res.table, []
    n_groups = t["rank"].nunique()
    for rank, g in t[t["rank"] <= SHOW_GROUPS].groupby("rank", sort=True):
        head = g.iloc[0]
        lines.append(f"{rank:>3}. {head['group']} gain {_gain(head['group_gain'])}")
        for r in g.itertuples():
            before = f"{r.p_win_from:.2f}" if r.from_rep_id else "-"
            lines.append(f"      {r.account_id}: {r.from_rep_id or '(none)'} -> {r.to_rep_id}  P(win) {before} -> "
                         f"{r.p_win_to:.2f}  {_gain(r.gain)}  [{r.confidence}]  {r.reasons}")
    if n_groups > SHOW_GROUPS:
        lines.append(f"  ... {n_groups - SHOW_GROUPS:,} more groups" + (f" in {res.out}" if res.out else " (write them all with --out FILE)"))
    if res.summary:
        s = res.summary
        first = s.accounts - s.accounts_with_current_rep
        pct = f" ({s.uplift_pct:+.2f}%)" if s.expected_value_current else ""
        lines.append(f"total: {s.moves:,} moves" + (f" and {first:,} first owners for accounts without a rep" if first else "")
                     + f"; expected value {_gain(s.expected_value_current, sign=False)} -> "
                     f"{_gain(s.expected_value_proposed, sign=False)}{pct}")
    return lines


def _account_lines(res) -> list[str]:
    lines = []
    for r in res.table.itertuples():
        room = "has room" if r.has_room else f"full; exchange: {r.exchange}"
        now = f"current {r.current_rep_id} {r.current_p_win:.2f}" if r.current_rep_id else "no current rep"
        lines.append(f"{r.rank:>3}. {r.rep_id}  P(win) {r.p_win:.2f} ({now})  "
                     f"gain {_gain(r.gain)}, net {_gain(r.net_gain)}  {room}  [{r.confidence}]  {r.reasons}")
    return lines


def _rep_lines(res) -> list[str]:
    return [f"  {r.action:<9} {r.account_id}: {r.from_rep_id or '(none)'} -> {r.to_rep_id}  gain {_gain(r.gain)}  "
            f"({r.room})  [{r.confidence}]  {r.reasons}" for r in res.table.itertuples()]


def format_training(out) -> str:
    r, m = out.result, out.result.metrics
    sp, sig = r.split, r.scorer.card.signal
    lines = [
        f"split by created_at: train {sp.train.rows} rows ({sp.train.first} .. {sp.train.last}), "
        f"validation {sp.validation.rows} ({sp.validation.first} .. {sp.validation.last}), "
        f"test {sp.test.rows} ({sp.test.first} .. {sp.test.last})",
        f"calibration: {r.scorer.model.calibration_} (chosen on validation; ECE uncalibrated "
        f"{m['repfit.validation.ece_uncalibrated']:.4f}); trees: {int(m['best_iteration'])}",
        "",
        "test period        AUC   log loss    Brier      ECE",
    ]
    for row in r.table.itertuples():
        lines.append(f"{row.model:<14} {row.auc:>7.4f} {row.log_loss:>10.4f} {row.brier:>8.4f} {row.ece:>8.4f}")
    gain = (f"log-loss gain of the actual rep's P(win) over the all-rep average {sig.log_loss_gain:+.4f} "
            f"(90% bootstrap {sig.gain_p05:+.4f} .. {sig.gain_p95:+.4f}; mean spread of P(win) "
            f"across reps {sig.rep_spread:.3f}"
            + (f"; on a sample of {sig.deals:,} of the {sp.test.rows:,} test deals" if 0 < sig.deals < sp.test.rows else "")
            + ")")
    if sig.detected:
        lines += ["", f"rep strengths: borne out by the test period: {gain}."]
    else:
        lines += ["", "rep strengths: NOT borne out by the test period. The model finds no rep-account",
                  f"  signal it can stand behind: {gain}.",
                  "  Treat its rankings of reps, and any reassignment built on them, as noise."]
    d = out.decision
    lines += ["", f"registered {out.tracking_uri} model 'repfit-winprob' version {d.version}: {d.reason}",
              f"aliases: challenger -> v{d.version}" + (f", champion -> v{d.version}" if d.promoted else f", champion stays v{d.champion_version}"),
              f"run: {out.run_id}"]
    return "\n".join(lines)


def format_summary(s: dict, warnings) -> str:
    lines = [
        f"reps                  {s['reps']:>10,}",
        f"accounts              {s['accounts']:>10,}",
        f"closed opportunities  {s['closed_opportunities']:>10,}",
        f"open opportunities    {s['open_opportunities']:>10,}",
        f"win rate              {s['win_rate']:>10.3f}",
        f"date range            {s['first_date']} .. {s['last_date']}",
        f"total capacity        {s['total_capacity']:>10,}",
        "tiers                 " + ", ".join(f"{k}: {v:,}" for k, v in s["tiers"].items()),
    ]
    lines.append("findings:" if warnings else "findings: none")
    lines += [f"  - {w}" for w in warnings]
    return "\n".join(lines)


def main() -> None:
    import signal

    # SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C: half-written outputs are removed, none is left
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    app(prog_name="repfit")


if __name__ == "__main__":
    main()
