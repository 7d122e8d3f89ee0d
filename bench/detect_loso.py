"""Leave one strategy out: for each attack strategy, the risk model is fit on the training
scenario without that strategy's accounts, calibrated on benign traffic, and scored on a
held-out scenario for the strategy it never saw. Campaign clustering has no per-strategy
settings, so it is the same in every run.

    python bench/detect_loso.py --corpora ../shared/data/corpora

Writes docs/detection-results/leave-one-strategy-out.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from stillwatch.detect.calibrate import calibrate
from stillwatch.detect.factory import load_accounts
from stillwatch.detect.training import snapshots_of_directory

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = (
    "naive_bulk",
    "hydra",
    "low_and_slow",
    "coercion",
    "capability_sweep",
    "mimicry",
    "templated",
    "model_switch",
)


def simulate(scenario: str, out: Path, corpora: list[str]) -> Path:
    if not (out / "events.jsonl.gz").exists():
        subprocess.run(
            [sys.executable, "-m", "stillwatch", "simulate", scenario, "--out", str(out), *corpora],
            check=True,
            capture_output=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpora")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "stillwatch-loso"))
    ap.add_argument("--target-fpr", type=float, default=0.0005)
    args = ap.parse_args()
    corpora = ["--corpora", args.corpora] if args.corpora else []
    work = Path(args.work)
    train = simulate(str(ROOT / "scenarios/train.yaml"), work / "train", corpora)
    calib = simulate(str(ROOT / "scenarios/loso-calibrate.yaml"), work / "calib", corpora)
    hold = simulate(str(ROOT / "scenarios/loso-holdout.yaml"), work / "holdout", corpora)
    snaps = snapshots_of_directory(train, args.corpora)
    rows = []
    for strategy in STRATEGIES:
        model_path = work / f"model-without-{strategy}.json"
        snaps.without([strategy, f"{strategy}_reseller"]).fit().save(model_path)
        fitted, _ = calibrate(
            calib / "events.jsonl.gz",
            target_fpr=args.target_fpr,
            model=model_path,
            accounts=load_accounts(calib / "accounts.jsonl.gz"),
            corpora=args.corpora,
        )
        fitted.save(model_path)
        out = work / f"run-{strategy}"
        out.mkdir(exist_ok=True)
        for cmd in (
            [
                "detect",
                str(hold / "events.jsonl.gz"),
                "--accounts",
                str(hold / "accounts.jsonl.gz"),
                "--model",
                str(model_path),
                "--out",
                str(out / "verdicts.jsonl"),
                *corpora,
            ],
            [
                "evaluate",
                "--verdicts",
                str(out / "verdicts.jsonl"),
                "--labels",
                str(hold / "labels.jsonl.gz"),
                "--events",
                str(hold / "events.jsonl.gz"),
                "--out",
                str(out / "eval"),
            ],
        ):
            subprocess.run(
                [sys.executable, "-m", "stillwatch", *cmd], check=True, capture_output=True
            )
        r = json.loads((out / "eval/report.json").read_text())
        p = r["by_persona"][strategy]
        req = r["before_detection"]["requests_by_strategy"].get(strategy, {})
        rows.append(
            (strategy, p["flagged"], p["accounts"], p["rate"], req.get("median"), r["benign_fpr"])
        )
        print(
            f"without {strategy:<17} caught {p['flagged']}/{p['accounts']} "
            f"({100 * p['rate']:.1f}%), median requests before flag {req.get('median')}, "
            f"benign FPR {100 * r['benign_fpr']:.3f}%",
            flush=True,
        )
    lines = [
        "# Leave one strategy out",
        "",
        "Each row: the risk model fit on `scenarios/train.yaml` without the strategy, "
        "calibrated on `scenarios/loso-calibrate.yaml`, scored on "
        "`scenarios/loso-holdout.yaml`.",
        "",
        "| strategy held out | caught | rate | median requests before flag | "
        "benign FPR (whole holdout) |",
        "|---|---|---|---|---|",
    ]
    for s, hit, n, rate, med, fpr in rows:
        lines.append(f"| {s} | {hit}/{n} | {100 * rate:.1f}% | {med} | {100 * fpr:.3f}% |")
    out_md = ROOT / "docs/detection-results/leave-one-strategy-out.md"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines) + "\n")
    print(f"written to {out_md}")


if __name__ == "__main__":
    main()
