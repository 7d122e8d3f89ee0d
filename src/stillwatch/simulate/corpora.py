"""Real prompt text and real human timing, from a corpora directory or the shipped fixtures.

The directory layout is the one of the project's shared corpora (attack/… and benign/…); any
part that is missing is skipped. Without a directory, small samples shipped with the package
(MIT and Apache-2.0 sources only; see fixtures/ATTRIBUTION.md) stand in.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

KINDS = ("chat", "conversations", "math", "code", "instructions", "templates")


@dataclass
class Corpora:
    chat: list[str] = field(default_factory=list)  # real users' opening prompts
    conversations: list[list[str]] = field(default_factory=list)  # users' turns, in order
    math: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # task templates with {slots}
    gaps: list[float] = field(default_factory=list)  # seconds between a person's messages
    source: str = ""

    def check(self) -> None:
        empty = [k for k in (*KINDS, "gaps") if not getattr(self, k)]
        if empty:
            raise ValueError(f"corpora from {self.source} have nothing for: {', '.join(empty)}")


def _open(path: Path) -> Any:
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8")
    )


def _jsonl(path: Path) -> Iterator[Any]:
    with _open(path) as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def chat_gaps(chitchat: Path, limit: int = 50_000) -> list[float]:
    """Gaps between one sender's consecutive messages within a conversation."""
    with _open(chitchat) as fh:
        data = json.load(fh)
    gaps: list[float] = []
    for conv in data.values():
        last: dict[str, float] = {}
        for turn in (m for block in conv.get("messages", []) for m in block):
            t = datetime.fromisoformat(turn["timestamp"].replace("Z", "+00:00")).timestamp()
            sender = turn["sender"]
            if sender in last and t > last[sender]:
                gaps.append(t - last[sender])
            last[sender] = t
            if len(gaps) >= limit:
                return gaps
    return gaps


def load_directory(root: Path, attack_only: bool = False) -> Corpora:
    """`attack_only`: just the instruction, math and code sets (what the detector's corpus index
    needs), without the benign conversations and timings."""
    c = Corpora(source=str(root))
    a, b = root / "attack", root / ("benign" if not attack_only else "-")
    if (p := a / "gsm8k" / "train.jsonl.gz").exists():
        c.math = [r["question"] for r in _jsonl(p)]
    if (p := a / "humaneval" / "HumanEval.jsonl.gz").exists():
        c.code += [r["prompt"] for r in _jsonl(p)]
    if (p := a / "codealpaca" / "code_alpaca_2k.json").exists():
        with open(p, encoding="utf-8") as fh:
            c.code += [
                (r["instruction"] + ("\n" + r["input"] if r["input"] else ""))
                for r in json.load(fh)
            ]
    if (p := a / "self_instruct" / "seed_tasks.jsonl").exists():
        for r in _jsonl(p):
            inputs = [i["input"] for i in r.get("instances", []) if i.get("input")]
            c.instructions.append(r["instruction"] + ("\n\n" + inputs[0] if inputs else ""))
    if (p := a / "flan_templates" / "flan_v2_patterns.json").exists():
        with open(p, encoding="utf-8") as fh:
            c.templates += [pair[0] for pairs in json.load(fh).values() for pair in pairs]
    for p in (
        sorted((a / "t0_templates").glob("*.jsonl.gz")) if (a / "t0_templates").exists() else []
    ):
        c.instructions += [r["prompt"] for r in _jsonl(p)]
    if (p := b / "mt_bench" / "question.jsonl").exists():
        for r in _jsonl(p):
            c.conversations.append(list(r["turns"]))
            c.chat.append(r["turns"][0])
    oasst = b / "oasst"
    for name in ("prompt_lottery_en_250_text.jsonl", "multilingual-60.jsonl"):
        if (oasst / name).exists():
            c.chat += [t for t in _jsonl(oasst / name) if isinstance(t, str)]
    if (oasst / "en_100_tree.jsonl").exists():
        for tree in _jsonl(oasst / "en_100_tree.jsonl"):
            turns, node = [], tree["prompt"]
            while node:  # follow the first reply of each prompter turn down the tree
                if node.get("role") == "prompter":
                    turns.append(node["text"])
                node = (node.get("replies") or [None])[0]
            if turns:
                c.conversations.append(turns)
                c.chat.append(turns[0])
    share = b / "sharegpt"
    for p in sorted(share.glob("*.json.gz")) if share.exists() else []:
        with _open(p) as fh:
            for r in json.load(fh)[:20_000]:
                turns = [
                    t["value"]
                    for t in r.get("conversations", [])
                    if t.get("from") == "human" and t.get("value")
                ]
                if turns and len(turns[0]) < 4000:
                    c.conversations.append(turns)
                    c.chat.append(turns[0])
    if (p := b / "chitchat" / "dataset.2018-04.json.gz").exists():
        c.gaps = chat_gaps(p)
    return c


def load_fixtures() -> Corpora:
    base = resources.files("stillwatch.simulate.fixtures")
    c = Corpora(source="shipped fixtures")
    for kind in KINDS:
        text = base.joinpath(f"{kind}.jsonl").read_text(encoding="utf-8")
        setattr(c, kind, [json.loads(line) for line in text.split("\n") if line.strip()])
    c.gaps = json.loads(base.joinpath("gaps.json").read_text())
    return c


def load_corpora(
    path: str | os.PathLike[str] | None = None, attack_only: bool = False
) -> Corpora:
    """`path`, else $STILLWATCH_CORPORA, else the shipped fixtures."""
    chosen = path or os.environ.get("STILLWATCH_CORPORA")
    corpora = load_directory(Path(chosen), attack_only) if chosen else load_fixtures()
    if not attack_only:
        corpora.check()
    return corpora
