"""Throughput of offline detection, beside its baseline, in one process.

Reads the log once into memory (so disk and JSON parsing are measured separately), then runs
over the same events, interleaved in rounds: the null detector (the runner's own cost: the
baseline), and the distillation detector with each stage timed (signals, account state and
risk, policy, the cohorts of lockstep activity and corpus partitions, clustering). Prints
events/s for both, the ratio, peak memory, the per-stage profile and the distribution of the
cost of `decide` per request (what each request waits for in the gateway) and of `observe`
(what the gateway does once the request is sent on).

    python bench/detect_throughput.py EVENTS [--accounts A] [--corpora DIR] [--limit N]
    python bench/detect_throughput.py            # simulates ~1.3 M events first (about 1 min)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stillwatch.detect.baselines import NullDetector
from stillwatch.detect.factory import build_corpus_index, build_detector, load_accounts
from stillwatch.detect.parallel import default_workers
from stillwatch.detect.runner import run_detection
from stillwatch.events import read_events_in_order

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = (
    "null",
    "distillation-no-memo",
    "distillation",
    "distillation-workers",
    "distillation-workers-lexicon",  # the coercion signal's encoder stage off
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timed:
    """Wraps a detector's stages with counters of nanoseconds."""

    def __init__(self, detector: Any) -> None:
        self.d = detector
        self.ns: dict[str, int] = {
            "signals": 0, "account+risk": 0, "policy": 0, "cohorts": 0, "cluster": 0,
        }
        self.max_ns: dict[str, int] = dict.fromkeys(self.ns, 0)  # the longest single call
        self.decide_ns: list[int] = []
        self.observe_ns: list[int] = []
        clock = time.perf_counter_ns
        signals, observe, decision, cohorts, cluster = (
            detector.signals,
            detector._observe,
            detector._decision,
            detector._link_cohorts,
            detector.cluster,
        )

        counters = self

        class Stage:
            """A timed callable that keeps the wrapped object's attributes."""

            def __init__(self, name: str, fn: Any) -> None:
                self.name, self.fn = name, fn

            def __call__(self, *a: Any, **k: Any) -> Any:
                t = clock()
                try:
                    return self.fn(*a, **k)
                finally:
                    took = clock() - t
                    counters.ns[self.name] += took
                    counters.max_ns[self.name] = max(counters.max_ns[self.name], took)

            def __getattr__(self, attr: str) -> Any:
                return getattr(self.fn, attr)

        self.extractor = self.signals = signals  # what the runner hands its workers
        detector.signals = Stage("signals", signals)
        detector._observe = Stage("account+risk", observe)
        detector._decision = Stage("policy", decision)
        detector._link_cohorts = Stage("cohorts", cohorts)
        detector.cluster = Stage("cluster", cluster)
        self._decide = detector.decide

        def decide(ctx: Any) -> Any:
            t = clock()
            out = self._decide(ctx)
            self.decide_ns.append(clock() - t)
            return out

        self.decide = decide
        self._observe = detector.observe

        def observe(ctx: Any) -> None:
            t = clock()
            self._observe(ctx)
            self.observe_ns.append(clock() - t)

        self.observe = observe
        self.record = detector.record


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One detector over the log, streamed from disk as `stillwatch detect` does."""
    accounts = load_accounts(args.accounts)
    if args.child == "null":
        detector: Any = NullDetector()
        timed = None
    else:
        memo = 0 if args.child == "distillation-no-memo" else 20_000
        timed = Timed(build_detector(
            accounts=accounts, index=build_corpus_index(args.corpora), signal_memo=memo,
            coercion_encoder=not args.child.endswith("-lexicon"),
        ))
        detector = timed
    start_rss = peak_mib()
    t = time.perf_counter()
    n = 0

    def events() -> Any:
        nonlocal n
        for e in read_events_in_order(args.events):
            n += 1
            yield e
            if args.limit and n >= args.limit:
                return

    workers = default_workers() if args.child.startswith("distillation-workers") else 0
    run_detection(events(), detector, workers=workers)
    seconds = time.perf_counter() - t
    out: dict[str, Any] = {
        "detector": args.child,
        "events": n,
        "seconds": seconds,
        "signal_workers": workers,
        "workers_peak_rss_mib": (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else 0.0
        ),
        "events_per_s": n / seconds,
        "peak_rss_mib": peak_mib(),
        "rss_before_mib": start_rss,
    }
    if timed is not None:

        def quantiles(ns: list[int]) -> dict[str, float]:
            ns = sorted(ns)

            def q(p: float) -> float:
                return ns[min(len(ns) - 1, int(p * len(ns)))] / 1000

            return {
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "mean": statistics.fmean(ns) / 1000,
            }

        out["stages_us_per_event"] = {k: v / 1000 / n for k, v in timed.ns.items()}
        out["stages_longest_call_ms"] = {k: v / 1e6 for k, v in timed.max_ns.items()}
        out["decide_us"] = quantiles(timed.decide_ns)
        # what the gateway does once the request is sent on: off the request's latency
        out["observe_us"] = quantiles(timed.observe_ns)
        out["campaigns"] = len(timed.d.campaigns)
        extractor = timed.extractor
        out["signal_memo_hit_rate"] = extractor.hits / max(1, extractor.hits + extractor.misses)
        out["coercion_encoder_runs"] = extractor.encoder.runs if extractor.encoder else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("events", nargs="?")
    ap.add_argument("--accounts")
    ap.add_argument("--corpora", default=None)
    ap.add_argument("--limit", type=int, default=0, help="use the first N events only")
    ap.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="+", choices=CHILDREN, help="run these children only")
    ap.add_argument("--out", default=str(ROOT / "bench/results/detect_throughput.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    tmp = None
    if args.events is None:
        tmp = tempfile.TemporaryDirectory()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "stillwatch",
                "simulate",
                str(ROOT / "scenarios/holdout-a.yaml"),
                "--out",
                tmp.name,
            ]
            + (["--corpora", args.corpora] if args.corpora else []),
            check=True,
        )
        args.events = f"{tmp.name}/events.jsonl.gz"
        args.accounts = f"{tmp.name}/accounts.jsonl.gz"
    runs = {}
    # baseline first, then the detector without and with its signal memo, then with workers
    for name in args.only or CHILDREN:
        cmd = [sys.executable, __file__, args.events, "--child", name]
        for flag, value in (
            ("--accounts", args.accounts),
            ("--corpora", args.corpora),
            ("--limit", str(args.limit) if args.limit else None),
        ):
            if value:
                cmd += [flag, value]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = runs[name]
        print(
            f"{name:<13} {r['events']:>10,} events {r['seconds']:8.1f} s "
            f"{r['events_per_s']:>9,.0f}/s  peak {r['peak_rss_mib']:,.0f} MiB"
        )
    if args.only:
        Path(args.out).write_text(json.dumps(runs, indent=1) + "\n")
        return
    d, b, cold = runs["distillation"], runs["null"], runs["distillation-no-memo"]
    par, lex = runs["distillation-workers"], runs["distillation-workers-lexicon"]
    result = {
        **runs,
        "ratio_time_distillation_to_null": d["seconds"] / b["seconds"],
        "ratio_time_no_memo_to_memo": cold["seconds"] / d["seconds"],
        "ratio_time_in_line_to_workers": d["seconds"] / par["seconds"],
        "ratio_time_encoder_to_lexicon": par["seconds"] / lex["seconds"],
        "extra_peak_rss_mib": d["peak_rss_mib"] - b["peak_rss_mib"],
        "target_events_per_s": 50_000,
        "target_decide_p99_us": 200,
    }
    print(
        f"distillation takes {result['ratio_time_distillation_to_null']:.2f}x the null "
        f"detector's time; stages (µs/event): "
        + ", ".join(f"{k} {v:.1f}" for k, v in d["stages_us_per_event"].items())
    )
    print("longest single call (ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in d["stages_longest_call_ms"].items()))
    for name in ("distillation-no-memo", "distillation"):
        for call in ("decide", "observe"):
            print(f"{name} {call} µs: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in runs[name][f"{call}_us"].items()))
    print(f"signal memo: hit rate {d['signal_memo_hit_rate']:.1%}; without it detection takes "
          f"{result['ratio_time_no_memo_to_memo']:.2f}x as long")
    print(f"signals computed ahead by {par['signal_workers']} worker(s): "
          f"{par['events_per_s']:,.0f} events/s, {result['ratio_time_in_line_to_workers']:.2f}x "
          f"the in-line run's speed")
    print(f"coercion encoder stage: ran on {d['coercion_encoder_runs']} prompts; workers take "
          f"{result['ratio_time_encoder_to_lexicon']:.2f}x the time of the lexicon alone "
          f"({lex['events_per_s']:,.0f} events/s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
