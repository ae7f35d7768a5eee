"""Command-line interface: parse options, call one library function, print the result.

Only this module reads paths from the user and turns ``RepfitError`` into a one-line message and
a non-zero exit code (no traceback).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from repfit.errors import RepfitError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RepfitError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="repfit")
def app() -> None:
    """repfit: recommend which sales rep should own which account.

    \b
    Example:
      repfit synth --out demo/org --reps 40 --accounts 2000 --seed 7
      repfit validate --data demo/org
    """


def _data_option(f):
    f = click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Column mapping (repfit.toml). Default: DATA/repfit.toml if present.")(f)
    return click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
                        help="Directory holding reps, accounts and opportunities (.csv or .parquet).")(f)


@app.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory.")
@click.option("--reps", "n_reps", default=40, show_default=True, type=click.IntRange(min=1), help="Number of reps.")
@click.option("--accounts", "n_accounts", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Number of accounts.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same files).")
def synth(out: Path, n_reps: int, n_accounts: int, seed: int) -> None:
    """Generate a synthetic org with known ground truth (in OUT/truth/).

    \b
    Example:
      repfit synth --out demo/org --reps 40 --accounts 2000 --seed 7
    """
    from repfit.synth import write_org

    counts = write_org(out, n_reps, n_accounts, seed)
    click.echo(f"wrote {out}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()) + f"; truth in {out / 'truth'}")


@app.command()
@_data_option
def validate(data_dir: Path, mapping: Path | None) -> None:
    """Load the three tables through the contract and print counts and findings.

    \b
    Example:
      repfit validate --data demo/org
      repfit validate --data ../shared/data/crm_sales_opportunities --mapping examples/maven_crm/repfit.toml
    """
    from repfit.schema import load_dataset

    ds = load_dataset(data_dir, mapping)
    click.echo(format_summary(ds.summary(), ds.warnings))


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
    app(prog_name="repfit")


if __name__ == "__main__":
    main()
