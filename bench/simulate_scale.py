"""Simulation at the size of the largest reported campaign, with flat memory.

Runs `stillwatch simulate` in child processes on the same accounts (24,000 attacker accounts
at full scale) over two durations: 7/16 of a day-week (the baseline) and the full week (~16
million events), and prints events/s, bytes written and peak memory for each, and the ratios.
Flat memory means the peak barely moves while the events grow sixteenfold: memory follows the
number of accounts, not of events.

    python bench/simulate_scale.py               # full size (about a quarter of an hour)
    python bench/simulate_scale.py --scale 0.25  # a quicker look
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def scenario(scale: float, days: float) -> str:
    accounts = max(16, int(24_000 * scale))
    return f"""
seed: 99
days: {days}
benign: {{chat_user: {max(10, int(2000 * scale))}, app_backend: {max(1, int(8 * scale))}}}
attacks:
  - {{strategy: hydra, campaigns: 4, accounts: {accounts // 4}, per_hour: 3.9, proxies: true,
     signup_burst_hours: 6, shared_payment: 0.3, shared_email_domain: 0.3}}
"""


def run(scale: float, days: float, tmp: Path) -> dict:
    path = tmp / f"scenario-{scale}-{days}.yaml"
    path.write_text(scenario(scale, days))
    out = tmp / f"out-{scale}-{days}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stillwatch", "simulate", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    events = int(re.search(r"([\d,]+) events from", proc.stdout)[1].replace(",", ""))
    size = sum(p.stat().st_size for p in out.iterdir())
    for p in out.iterdir():
        p.unlink()
    return {
        "scale": scale,
        "days": days,
        "events": events,
        "seconds": round(seconds, 1),
        "events_per_s": round(events / seconds),
        "bytes": size,
        "peak_mib": round(max(peak_kib, before) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 24,000 attacker accounts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-simscale-") as tmpdir:
        tmp = Path(tmpdir)
        # the short run goes first: children's peak memory only ever grows
        base = run(args.scale, 7 / 16, tmp)
        full = run(args.scale, 7, tmp)
    for r in (base, full):
        print(
            f"scale {r['scale']:<5g} {r['days']:>6.3g} days {r['events']:>12,} events  "
            f"{r['seconds']:>7.1f} s  "
            f"{r['events_per_s']:>8,} events/s  {r['bytes'] / 1e9:6.2f} GB  "
            f"peak {r['peak_mib']:7.1f} MiB"
        )
    print(
        f"events x{full['events'] / base['events']:.1f}, peak memory "
        f"x{full['peak_mib'] / base['peak_mib']:.2f}, throughput "
        f"x{full['events_per_s'] / base['events_per_s']:.2f}"
    )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "simulate_scale.json").write_text(json.dumps({"baseline": base, "full": full}, indent=2))


if __name__ == "__main__":
    main()
