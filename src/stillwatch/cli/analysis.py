"""`stillwatch detect` and `stillwatch evaluate`: offline detection and its figures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from stillwatch.cli.common import fail
from stillwatch.events import (
    Label,
    RecordError,
    RequestEvent,
    Verdict,
    format_ts,
    parse_ts,
    read_events_in_order,
    read_records,
    write_records,
)

DETECTOR_HELP = "null (flags nothing) or volume (rolling 24 h volume above the top 1%)"


def _detector(name: str):
    from stillwatch.detect.baselines import DETECTORS

    if name not in DETECTORS:
        raise fail(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    return DETECTORS[name]()


def detect(
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="events.jsonl[.gz]"),
    out: Path = typer.Option(..., "--out", help="verdicts.jsonl"),
    detector: str = typer.Option("volume", help=DETECTOR_HELP),
) -> None:
    """Replay a traffic log through a detector in time order and write one verdict per account."""
    from stillwatch.detect.runner import detect_file

    try:
        verdicts = detect_file(events, out, _detector(detector))
    except RecordError as exc:
        raise fail(str(exc)) from None
    flagged = sum(v.flagged for v in verdicts)
    typer.echo(f"{len(verdicts)} accounts, {flagged} flagged; verdicts in {out}")


def _cut(events: Path, at: float, tmp: Path) -> Path:
    out = tmp / f"cut-{at:.3f}.jsonl"
    write_records(
        out, RequestEvent, (e for e in read_events_in_order(events) if parse_ts(e.ts) <= at)
    )
    return out


def check_causal(events: Path, verdicts: list[Verdict], detector: str, cuts: int = 4) -> list[str]:
    """Rerun detection on the log cut at several times: the accounts flagged must be exactly
    those whose `first_flagged_at` is at or before the cut."""
    from stillwatch.detect.runner import run_detection

    times = [parse_ts(e.ts) for e in read_events_in_order(events)]
    if not times:
        return []
    lo, hi = times[0], times[-1]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1, cuts + 1):
            at = lo + (hi - lo) * k / (cuts + 1)
            cut = _cut(events, at, Path(tmp))
            again = {
                v.account_id
                for v in run_detection(read_events_in_order(cut), _detector(detector))
                if v.flagged
            }
            expected = {
                v.account_id
                for v in verdicts
                if v.first_flagged_at is not None and parse_ts(v.first_flagged_at) <= at
            }
            if again != expected:
                problems.append(
                    f"cut at {format_ts(at)}: {len(again ^ expected)} accounts differ "
                    f"(e.g. {sorted(again ^ expected)[:3]})"
                )
    return problems


def evaluate_cmd(
    verdicts: Path = typer.Option(..., exists=True, dir_okay=False),
    labels: Path = typer.Option(..., exists=True, dir_okay=False),
    events: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The log, for extraction yield and timings."
    ),
    out: Path = typer.Option(Path("evaluation"), help="Directory for report.json and .html."),
    check_causal_events: Path | None = typer.Option(
        None,
        "--check-causal",
        exists=True,
        dir_okay=False,
        help="Rerun detection on this log cut at several times and check causality.",
    ),
    detector: str = typer.Option("volume", help="Detector for --check-causal: " + DETECTOR_HELP),
) -> None:
    """Score verdicts against labels: recall, false positives, campaigns, extraction yield."""
    from stillwatch.evaluate import evaluate
    from stillwatch.evaluate.report import render_html

    try:
        v = list(read_records(verdicts, Verdict))
        lab = list(read_records(labels, Label))
        ev_iter = read_records(events, RequestEvent) if events else None
        result = evaluate(v, lab, ev_iter)
    except RecordError as exc:
        raise fail(str(exc)) from None
    data = result.to_dict()
    if check_causal_events is not None:
        problems = check_causal(check_causal_events, v, detector)
        data["causality"] = {"ok": not problems, "problems": problems}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "report.html").write_text(render_html(result))
    typer.echo(
        f"attacker recall {100 * result.attacker_recall:.2f}%  "
        f"benign FPR {100 * result.benign_fpr:.3f}%  "
        f"campaign recall {100 * result.campaigns['recall']:.1f}%  "
        f"purity {100 * result.campaigns['purity']:.1f}%  "
        + (
            f"extraction yield {100 * result.extraction_yield:.2f}%"
            if result.extraction_yield is not None
            else ""
        )
    )
    for name, p in result.by_persona.items():
        typer.echo(
            f"  {name:<24} {p['label']:<8} {p['flagged']:>6}/{p['accounts']:<6} "
            f"{100 * p['rate']:6.2f}%"
        )
    typer.echo(f"report: {out / 'report.html'}, {out / 'report.json'}")
    if check_causal_events is not None:
        if data["causality"]["ok"]:
            typer.echo("causality: ok")
        else:
            for p in data["causality"]["problems"]:
                typer.echo(f"causality: {p}", err=True)
            raise typer.Exit(1)
