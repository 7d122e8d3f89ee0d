"""Rebuild src/stillwatch/simulate/fixtures from the shared corpora (MIT/Apache sources only).

    python tools/build_fixtures.py ../shared/data/corpora
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

from stillwatch.simulate.corpora import load_directory

OUT = Path(__file__).resolve().parents[1] / "src" / "stillwatch" / "simulate" / "fixtures"
SIZES = {"chat": 300, "conversations": 120, "math": 400, "code": 164, "instructions": 150,
         "templates": 200}


def main(root: str) -> None:
    src = Path(root)
    c = load_directory(src)
    # only the permissively licensed parts: no ShareGPT, no CodeAlpaca
    with tempfile.TemporaryDirectory() as view:
        c_open = load_directory(_permissive_view(src, Path(view)))
    rng = random.Random(20261123)
    OUT.mkdir(parents=True, exist_ok=True)
    for kind, n in SIZES.items():
        items = getattr(c_open, kind)
        sample = rng.sample(items, min(n, len(items)))
        with open(OUT / f"{kind}.jsonl", "w", encoding="utf-8") as fh:
            for item in sample:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    gaps = rng.sample(c.gaps, min(5000, len(c.gaps)))
    (OUT / "gaps.json").write_text(json.dumps([round(g, 1) for g in gaps]))
    print(f"fixtures written to {OUT}")


def _permissive_view(src: Path, view: Path) -> Path:
    """A directory of symlinks to the MIT/Apache files only."""
    allowed = ["attack/gsm8k", "attack/humaneval", "attack/self_instruct", "attack/flan_templates",
               "attack/t0_templates", "benign/mt_bench", "benign/oasst", "benign/chitchat"]
    for rel in allowed:
        target = view / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to((src / rel).resolve())
    return view


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/corpora")
