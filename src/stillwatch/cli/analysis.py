"""`stillwatch detect` and `stillwatch evaluate`: offline detection and its figures."""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

DETECTOR_HELP = (
    "distillation (the detector the gateway runs), volume (rolling 24 h volume above the top 1%)"
    " or null (flags nothing)"
)


@dataclass
class DetectorSpec:
    """Everything that picks a detector, so a rerun (the causality check) builds the same."""

    name: str = "distillation"
    model: Path | None = None
    accounts: Path | None = None
    corpora: Path | None = None
    extra_corpora: list[Path] = field(default_factory=list)
    use_corpus: bool = True
    coercion_encoder: bool = True

    def build(self, index: Any = None):
        from stillwatch.detect.factory import build_detector, load_accounts

        try:
            return build_detector(
                self.name,
                model=self.model,
                accounts=load_accounts(self.accounts),
                corpora=self.corpora,
                extra_corpora=self.extra_corpora,
                use_corpus=self.use_corpus,
                index=index,
                coercion_encoder=self.coercion_encoder,
            )
        except (ValueError, OSError, RecordError) as exc:
            raise fail(str(exc)) from None


def detect(
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="events.jsonl[.gz]"),
    out: Path = typer.Option(..., "--out", help="verdicts.jsonl"),
    campaigns: Path | None = typer.Option(None, "--campaigns", help="campaigns.jsonl"),
    detector: str = typer.Option("distillation", help=DETECTOR_HELP),
    accounts: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="accounts.jsonl[.gz]: sign-up data, payment"
    ),
    model: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Risk model from `stillwatch calibrate`."
    ),
    corpora: Path | None = typer.Option(
        None, envvar="STILLWATCH_CORPORA", help="Corpora directory for the membership index."
    ),
    corpus: list[Path] = typer.Option(
        [], exists=True, dir_okay=False, help="More JSONL prompts for the index (repeatable)."
    ),
    corpus_signal: bool = typer.Option(True, help="Use the corpus-membership signal."),
    coercion_encoder: bool = typer.Option(
        True,
        help="The coercion signal's encoder stage, for languages the lexicon lacks (when "
        "stillwatch[multilingual] is installed).",
    ),
    workers: int | None = typer.Option(
        None, min=0,
        help="Processes computing request signals ahead (default: one per spare core; 0: "
        "none). The verdicts are the same for any number.",
    ),
) -> None:
    """Replay a traffic log through a detector in time order and write one verdict per account
    (and the campaigns found), causally: each decision uses only what came before it."""
    from stillwatch.detect.parallel import default_workers
    from stillwatch.detect.runner import detect_file

    spec = DetectorSpec(
        detector, model, accounts, corpora, list(corpus), corpus_signal, coercion_encoder
    )
    workers = default_workers() if workers is None else workers
    try:
        verdicts = detect_file(
            events, out, spec.build(), campaigns_out=campaigns, workers=workers
        )
    except RecordError as exc:
        raise fail(str(exc)) from None
    flagged = sum(v.flagged for v in verdicts)
    in_campaigns = len({v.campaign_id for v in verdicts if v.campaign_id})
    typer.echo(
        f"{len(verdicts)} accounts, {flagged} flagged, {in_campaigns} campaigns; verdicts in {out}"
    )


def calibrate_cmd(
    benign: Path = typer.Option(..., exists=True, dir_okay=False, help="Benign events."),
    out: Path = typer.Option(..., "--out", help="model.json to write"),
    target_fpr: float = typer.Option(0.001, help="Share of benign accounts allowed a flag."),
    model: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Start model."),
    accounts: Path | None = typer.Option(None, exists=True, dir_okay=False),
    corpora: Path | None = typer.Option(None, envvar="STILLWATCH_CORPORA"),
    corpus_signal: bool = typer.Option(True, help="Calibrate the model without corpus signal."),
) -> None:
    """Fit the operating thresholds on your own benign traffic; `detect --model` and the
    gateway's `detection_model` load the result."""
    from stillwatch.detect.calibrate import calibrate
    from stillwatch.detect.factory import load_accounts

    try:
        fitted, report = calibrate(
            benign,
            target_fpr=target_fpr,
            model=model,
            accounts=load_accounts(accounts),
            corpora=corpora,
            use_corpus=corpus_signal,
        )
    except (ValueError, RecordError) as exc:
        raise fail(str(exc)) from None
    fitted.save(out)
    typer.echo(
        f"{report['accounts']} benign accounts: review at risk >= {report['threshold']:.6f} "
        f"({report['expected_flagged']} would be flagged), block at >= "
        f"{report['block_threshold']:.7f}; written to {out}"
    )


def signals_cmd(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help='JSONL of request events or {"prompt": ...}'
    ),
    corpora: Path | None = typer.Option(None, envvar="STILLWATCH_CORPORA"),
    corpus_signal: bool = typer.Option(True, help="Look prompts up in the corpus index."),
    coercion_encoder: bool = typer.Option(
        True,
        help="Score prompts in languages the coercion lexicon lacks with the multilingual "
        "encoder (needs stillwatch[multilingual]).",
    ),
) -> None:
    """Print the request signals of each line as JSONL: coercion score and flag (and the
    encoder stage's score where it ran), capability, template fingerprint, corpus match,
    parameter flags."""
    import orjson

    from stillwatch.detect.factory import build_corpus_index
    from stillwatch.detect.signals import SignalExtractor

    index = build_corpus_index(corpora) if corpus_signal else None
    extract = SignalExtractor(corpus=index, use_corpus=corpus_signal, encoder=coercion_encoder)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise fail(f"{file}:{number}: not JSON ({exc})") from None
            if not isinstance(item, dict):
                raise fail(f"{file}:{number}: expected an object")
            if isinstance(item.get("request"), dict):
                body = item["request"]
            elif isinstance(item.get("prompt"), str):
                body = {"messages": [{"role": "user", "content": item["prompt"]}]}
            else:
                raise fail(f'{file}:{number}: needs "request" (an event) or "prompt"')
            out = {"line": number, **({"id": item["id"]} if "id" in item else {})}
            out.update(extract(body).to_dict())
            typer.echo(orjson.dumps(out).decode())


def _cut(events: Path, at: float, tmp: Path) -> Path:
    out = tmp / f"cut-{at:.3f}.jsonl"
    write_records(
        out, RequestEvent, (e for e in read_events_in_order(events) if parse_ts(e.ts) <= at)
    )
    return out


def check_causal(
    events: Path, verdicts: list[Verdict], spec: DetectorSpec, cuts: int = 4
) -> list[str]:
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
                for v in run_detection(read_events_in_order(cut), spec.build())
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
    detector: str = typer.Option(
        "distillation", help="Detector for --check-causal: " + DETECTOR_HELP
    ),
    accounts: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="For --check-causal: as given to detect."
    ),
    model: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="For --check-causal: as given to detect."
    ),
    corpora: Path | None = typer.Option(None, envvar="STILLWATCH_CORPORA"),
    corpus_signal: bool = typer.Option(True, help="For --check-causal: as given to detect."),
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
        spec = DetectorSpec(detector, model, accounts, corpora, [], corpus_signal)
        problems = check_causal(check_causal_events, v, spec)
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
