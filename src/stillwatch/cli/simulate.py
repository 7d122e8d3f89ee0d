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


def replay_cmd(
    directory: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="A simulated or exported log: events, accounts."
    ),
    gateway: str = typer.Option(..., help="The gateway's base URL."),
    admin_token: str = typer.Option(
        ...,
        envvar="STILLWATCH_ADMIN_TOKEN",
        help="The gateway's admin token (to import the accounts).",
    ),
    out: Path = typer.Option(Path("replay_results.jsonl"), help="What happened to each request."),
    speed: float = typer.Option(0.0, help="0: as fast as order allows; k: k times real time."),
    concurrency: int = typer.Option(32, min=1),
    limit: int | None = typer.Option(None, help="Send only the first N events."),
) -> None:
    """Replay a log through a gateway (run it with replay mode on and this host trusted)."""
    from stillwatch.simulate.replay import replay_sync

    try:
        counts = replay_sync(
            directory,
            gateway,
            admin_token,
            out,
            speed=speed,
            concurrency=concurrency,
            limit=limit,
            progress=lambda n: typer.echo(f"  {n:,} sent", err=True),
        )
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    total = sum(counts.values())
    summary = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()))
    typer.echo(f"replayed {total:,} events ({summary}); results in {out}")
