"""`stillwatch simulate`: a labelled traffic log from a scenario and real corpora."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from stillwatch.cli.common import fail


def simulate(
    scenario: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="Scenario YAML (default: the shipped one)."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for events, accounts and labels."),
    corpora: Path | None = typer.Option(
        None,
        envvar="STILLWATCH_CORPORA",
        exists=True,
        file_okay=False,
        help="Corpora directory (default: the small samples shipped with the package).",
    ),
    parquet: bool = typer.Option(False, help="Write Parquet instead of gzip JSONL."),
    seed: int | None = typer.Option(None, help="Override the scenario's seed."),
) -> None:
    """Write a labelled traffic log of benign personas and distillation campaigns."""
    from stillwatch.simulate.corpora import load_corpora
    from stillwatch.simulate.generator import generate
    from stillwatch.simulate.scenario import load_scenario

    try:
        sc = load_scenario(scenario)
        texts = load_corpora(corpora)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if seed is not None:
        sc.seed = seed
    started = time.monotonic()
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("simulate", total=1.0, events=0)
        summary = generate(
            sc,
            texts,
            out,
            suffix=".parquet" if parquet else ".jsonl.gz",
            progress=lambda frac, n: bar.update(task, completed=frac, events=n),
        )
    took = time.monotonic() - started
    typer.echo(
        f"{summary['events']:,} events from {summary['accounts']:,} accounts "
        f"({summary['attackers']:,} attackers) in {took:.0f}s → {out} "
        f"(corpora: {texts.source})"
    )
