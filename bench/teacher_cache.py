"""SmolLM2's answers to real corpus prompts, generated once per setting and cached (resumable).

Shared by the watermark-quality and radioactivity benchmarks. Settings: `greenlist` and
`gumbel` (stillwatch's schemes under the demo deployment key; `greenlist-d3` with bias 3
instead of 2), `hf-kgw` (transformers'
`WatermarkingConfig`, the baseline), `none` (unwatermarked). The cache lives in
bench/.cache/teacher/<setting>.jsonl, one answer per line: {"i", "prompt", "ids"}; answers
archived with `--archive` (bench/data/teacher/, committed) seed it on a new machine.

    python bench/teacher_cache.py --setting greenlist --n 200
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
import zlib
from pathlib import Path

CACHE = DEFAULT_CACHE = Path(__file__).parent / ".cache" / "teacher"
# committed answers of the main cache, ids only (prompts are rebuilt from the corpora), so that
# a new machine starts from them instead of hours of generation
ARCHIVE = Path(__file__).parent / "data" / "teacher"
ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "data" / "corpora"
# setting -> the stillwatch scheme it generates under (hf-kgw and none have none)
SCHEMES = {
    "greenlist": {"name": "greenlist"},
    "greenlist-d3": {"name": "greenlist", "delta": 3.0},
    "gumbel": {"name": "gumbel"},
}
SETTINGS = (*SCHEMES, "hf-kgw", "none")
MAX_NEW = 200
TEMPERATURE = 1.0
HF_CONFIG = {"greenlist_ratio": 0.25, "bias": 2.0, "seeding_scheme": "lefthash", "context_width": 1}


def corpus_prompts(limit: int = 5000, seed: int = 7) -> list[str]:
    """A fixed mix of real prompts: instructions, math, code and user chat."""
    from stillwatch.simulate.corpora import load_corpora

    c = load_corpora(CORPORA if CORPORA.exists() else None)
    pools = [c.instructions[:2000], c.math, c.code, c.chat]
    rng = random.Random(seed)
    for pool in pools:
        rng.shuffle(pool)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < limit and any(pools):
        for pool in pools:
            while pool:
                p = pool.pop().strip()
                if 10 <= len(p) <= 1500 and p not in seen:
                    seen.add(p)
                    out.append(p)
                    break
    return out


def read(setting: str) -> list[dict]:
    restore(setting)
    return read_jsonl(CACHE / f"{setting}.jsonl")


def restore(setting: str) -> None:
    """Add the archived answers the cache lacks (main cache only)."""
    archive = ARCHIVE / f"{setting}.jsonl.gz"
    if CACHE != DEFAULT_CACHE or not archive.exists():
        return
    have = {r["i"] for r in read_jsonl(CACHE / f"{setting}.jsonl")}
    with gzip.open(archive, "rt") as fh:
        missing = [r for r in map(json.loads, fh) if r["i"] not in have]
    if not missing:
        return
    if not CORPORA.exists():  # the archive's prompts are the corpora's
        print(f"{archive} not used: its prompts come from {CORPORA}, absent", file=sys.stderr)
        return
    prompts = corpus_prompts(max(r["i"] for r in missing) + 1)
    with append_to(CACHE / f"{setting}.jsonl") as fh:
        for r in missing:
            prompt = prompts[r["i"]]
            if zlib.crc32(prompt.encode()) != r["crc"]:
                raise SystemExit(f"{archive}: prompt {r['i']} differs from the corpora's; "
                                 "the archive was made from other corpora")
            fh.write(json.dumps({"i": r["i"], "prompt": prompt, "ids": r["ids"]}) + "\n")


def write_archive(setting: str) -> Path:
    """The cache's answers as the committed archive: index, prompt checksum and token ids."""
    rows = sorted(read_jsonl(CACHE / f"{setting}.jsonl"), key=lambda r: r["i"])
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    path = ARCHIVE / f"{setting}.jsonl.gz"
    with gzip.open(path, "wt", compresslevel=9) as fh:
        for r in rows:
            fh.write(json.dumps({"i": r["i"], "crc": zlib.crc32(r["prompt"].encode()),
                                 "ids": r["ids"]}, separators=(",", ":")) + "\n")
    return path


def append_to(path: Path):
    """The cache file opened for appending, a partial last line (a run cut mid-write) cut off
    first, so that new lines do not fuse with it and vanish from `read_jsonl`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
    return open(path, "a")


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a cache file (a run cut mid-line leaves a partial last line)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by an interrupted run
            break
    return rows


def ensure(setting: str, n: int, batch: int = 16, offset: int = 0) -> list[dict]:
    """The first n answers of `setting` (from prompt `offset`), generating what is missing."""
    import torch
    from transformers import WatermarkingConfig

    from stillwatch.watermark import teacher
    from stillwatch.watermark.keys import MasterKeys
    from stillwatch.watermark.model import chat_ids, load_smollm2
    from stillwatch.watermark.schemes import scheme_from

    if setting not in SETTINGS:
        raise SystemExit(f"unknown setting {setting!r}: {SETTINGS}")
    rows = read(setting)
    done = {r["i"] for r in rows}
    todo = [i for i in range(offset, offset + n) if i not in done]
    if not todo:
        return [r for r in rows if offset <= r["i"] < offset + n]
    prompts = corpus_prompts(offset + n + 1000)
    lm = load_smollm2(threads=int(os.environ.get("STILLWATCH_THREADS", "2")))
    key = MasterKeys.load().derive("v1")
    t0, made = time.time(), 0
    with append_to(CACHE / f"{setting}.jsonl") as fh:
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            ids = [chat_ids(lm.tokenizer, [{"role": "user", "content": prompts[i]}]) for i in idx]
            ids = [p[-512:] for p in ids]
            extra = None
            scheme = scheme_from(SCHEMES[setting]) if setting in SCHEMES else None
            if setting == "hf-kgw":
                extra = {"watermarking_config": WatermarkingConfig(**HF_CONFIG)}
            torch.manual_seed(idx[0])
            outs = teacher.generate(
                lm, ids, scheme=scheme, keys=[key] * len(idx), max_new_tokens=MAX_NEW,
                temperature=TEMPERATURE, extra=extra,
            )
            for i, o in zip(idx, outs, strict=True):
                fh.write(json.dumps({"i": i, "prompt": prompts[i], "ids": o}) + "\n")
                made += len(o)
            fh.flush()
            rate = made / (time.time() - t0)
            print(f"[{setting}] {start + len(idx)}/{len(todo)} answers, {rate:.0f} tok/s",
                  file=sys.stderr, flush=True)
    rows = read(setting)
    return sorted((r for r in rows if offset <= r["i"] < offset + n), key=lambda r: r["i"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", choices=SETTINGS, action="append", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--archive", action="store_true",
                    help=f"write the cached answers to {ARCHIVE.relative_to(ROOT)} (no generation)")
    args = ap.parse_args()
    for s in args.setting:
        if args.archive:
            print(write_archive(s))
        else:
            ensure(s, args.n, args.batch, args.offset)


if __name__ == "__main__":
    main()
