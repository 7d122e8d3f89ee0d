"""Detection figures on a held-out scenario, beside the baselines, as the issue asks for them:
the distillation detector, the same with the corpus-membership signal switched off, and the
`volume` and `null` baselines, each through `stillwatch detect` and `stillwatch evaluate`.

    python bench/detect_eval.py scenarios/holdout-b.yaml --corpora ../shared/data/corpora
    python bench/detect_eval.py --data DIR ...      # a log simulated before

Prints the headline figures and a per-persona/strategy table, and writes both as Markdown
to docs/detection-results/<scenario>.md (and the raw reports beside the data).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "distillation": ["--detector", "distillation"],
    "no corpus signal": ["--detector", "distillation", "--no-corpus-signal"],
    "volume": ["--detector", "volume"],
    "null": ["--detector", "null"],
}


def sw(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stillwatch", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"stillwatch {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run(data: Path, name: str, extra: list[str], corpora: list[str]) -> dict[str, Any]:
    slug = name.replace(" ", "_")
    out = data / f"run-{slug}"
    out.mkdir(exist_ok=True)
    t = time.monotonic()
    sw(
        "detect",
        str(data / "events.jsonl.gz"),
        "--accounts",
        str(data / "accounts.jsonl.gz"),
        "--out",
        str(out / "verdicts.jsonl"),
        "--campaigns",
        str(out / "campaigns.jsonl"),
        *extra,
        *corpora,
    )
    seconds = time.monotonic() - t
    sw(
        "evaluate",
        "--verdicts",
        str(out / "verdicts.jsonl"),
        "--labels",
        str(data / "labels.jsonl.gz"),
        "--events",
        str(data / "events.jsonl.gz"),
        "--out",
        str(out / "eval"),
    )
    report = json.loads((out / "eval/report.json").read_text())
    report["detect_seconds"] = seconds
    (out / "eval/report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def earlier(data: Path, name: str) -> dict[str, Any] | None:
    """A run's report from an earlier invocation on the same data, to complete the table."""
    path = data / f"run-{name.replace(' ', '_')}" / "eval/report.json"
    return json.loads(path.read_text()) if path.exists() else None


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def markdown(scenario: str, reports: dict[str, dict[str, Any]]) -> str:
    names = list(reports)
    lines = [
        f"# Detection on `{scenario}`",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(reports[n]) for n in names) + " |")

    row("attacker-account recall", lambda r: pct(r["attacker_recall"]))
    row("benign false-positive rate", lambda r: pct(r["benign_fpr"], 3))
    row("benign accounts blocked", lambda r: str(r["benign_affected"]["blocked_accounts"]))
    row("campaign recall", lambda r: pct(r["campaigns"]["recall"], 1))
    row("campaign purity", lambda r: pct(r["campaigns"]["purity"], 1))
    row("extraction yield", lambda r: pct(r["extraction_yield"]))
    row("requests before flag (median)", lambda r: str(r["before_detection"]["requests"]["median"]))
    row(
        "hydra: requests before flag (median)",
        lambda r: str(r["before_detection"]["requests_by_strategy"].get("hydra", {}).get("median")),
    )
    row("detect time", lambda r: f"{r.get('detect_seconds', 0):.0f} s")
    lines += [
        "",
        "Per persona (benign: share flagged; attacker: share caught):",
        "",
        "| persona | label | accounts | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    first = reports[names[0]]["by_persona"]
    for persona, p in sorted(first.items(), key=lambda kv: (kv[1]["label"], kv[0])):
        cells = []
        for n in names:
            q = reports[n]["by_persona"].get(persona)
            cells.append(f"{q['flagged']} ({pct(q['rate'])})" if q else "n/a")
        lines.append(f"| {persona} | {p['label']} | {p['accounts']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario", nargs="?")
    ap.add_argument("--data")
    ap.add_argument("--corpora")
    ap.add_argument("--only", nargs="*", choices=list(RUNS), default=list(RUNS))
    args = ap.parse_args()
    corpora = ["--corpora", args.corpora] if args.corpora else []
    if args.data:
        data = Path(args.data)
    else:
        if not args.scenario:
            raise SystemExit("give a scenario or --data")
        data = Path("/tmp") / f"stillwatch-eval-{Path(args.scenario).stem}"
        print(sw("simulate", args.scenario, "--out", str(data), *corpora).strip().splitlines()[-1])
    reports = {}
    for name in args.only:
        reports[name] = run(data, name, RUNS[name], corpora)
        r = reports[name]
        print(
            f"{name:<18} recall {pct(r['attacker_recall'])}  FPR {pct(r['benign_fpr'], 3)}  "
            f"campaigns {pct(r['campaigns']['recall'], 1)} purity "
            f"{pct(r['campaigns']['purity'], 1)}  yield {pct(r['extraction_yield'])}  "
            f"({r['detect_seconds']:.0f} s)"
        )
    for name in RUNS:
        if name not in reports and (r := earlier(data, name)) is not None:
            reports[name] = r
    reports = {n: reports[n] for n in RUNS if n in reports}
    scenario = Path(args.scenario).name if args.scenario else data.name
    text = markdown(scenario, reports)
    out = ROOT / "docs/detection-results" / (Path(scenario).stem + ".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
