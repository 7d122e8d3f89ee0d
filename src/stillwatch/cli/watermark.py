"""`stillwatch watermark detect|trace|keygen` and `stillwatch audit`: attribution from the CLI.

Texts come from `--text`, a plain file (one text), `-` (stdin) or JSONL: one JSON string or
object per line, with the text under "text" or "content", or a request event of the traffic
spec (its response content; its `watermark_key_id` names the key to test).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from stillwatch.cli.common import fail

app = typer.Typer(help="Watermark keys, detection and traitor tracing.", no_args_is_help=True)

SchemeOpt = typer.Option("greenlist", help="greenlist or gumbel (as the upstream was run).")
SecretsOpt = typer.Option(
    None, help="Master secrets: '1=hex,2=hex' or a JSON file (default: "
    "$STILLWATCH_WATERMARK_SECRETS, else the demo secret)."
)
TokenizerOpt = typer.Option(
    None, help="tokenizer.json of the model (default: SmolLM2's, shipped)."
)


@dataclass
class Text:
    label: str
    text: str
    key_id: str | None = None
    account_id: str | None = None


def _from_record(obj: Any, label: str) -> Text | None:
    if isinstance(obj, str):
        return Text(label, obj)
    if not isinstance(obj, dict):
        return None
    text = obj.get("text") or obj.get("content")
    resp = obj.get("response")
    if text is None and isinstance(resp, dict):
        text = resp.get("content")
    if not isinstance(text, str):
        return None
    return Text(
        str(obj.get("id") or label),
        text,
        obj.get("watermark_key_id") if isinstance(obj.get("watermark_key_id"), str) else None,
        obj.get("account_id") if isinstance(obj.get("account_id"), str) else None,
    )


def read_texts(source: str | None, text: str | None) -> list[Text]:
    if text is not None:
        return [Text("text", text)]
    if source is None:
        raise fail("give a FILE (or - for stdin) or --text")
    if source == "-":
        raw = sys.stdin.read()
        name = "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise fail(f"no such file: {source}")
        raw = path.read_text(encoding="utf-8", errors="replace")
        name = path.name
    if source.endswith((".jsonl", ".ndjson")) or (source == "-" and raw.lstrip()[:1] in "{\""):
        out = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = _from_record(json.loads(line), f"{name}:{n}")
            except json.JSONDecodeError as exc:
                raise fail(f"{name} line {n}: not JSON ({exc.msg})") from None
            if item is not None:
                out.append(item)
        return out
    return [Text(name, raw)]


def _keys(secrets: str | None) -> Any:
    from stillwatch.watermark.keys import KeyError_, MasterKeys

    try:
        return MasterKeys.load(secrets)
    except KeyError_ as exc:
        raise fail(str(exc)) from None


def _scheme(name: str) -> Any:
    from stillwatch.watermark.schemes import scheme_from

    try:
        return scheme_from(name)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from None


def _tokenizer(path: Path | None) -> Any:
    from stillwatch.watermark.tokenizer import load_tokenizer

    try:
        return load_tokenizer(str(path) if path else None)
    except Exception as exc:
        raise fail(f"cannot load the tokenizer: {exc}") from None


def _emit(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


@app.command("detect")
def detect_cmd(
    source: str | None = typer.Argument(None, help="Text file, JSONL, or - for stdin."),
    text: str | None = typer.Option(None, help="A text to test instead of a file."),
    key_id: str | None = typer.Option(
        None, help="Key id to test (v1, v1:<account>); default: each event's own, else the "
        "current deployment key."
    ),
    scheme: str = SchemeOpt,
    secrets: str | None = SecretsOpt,
    tokenizer: Path | None = TokenizerOpt,
    alpha: float = typer.Option(1e-6, min=0, max=1, help="Call a text watermarked below this."),
    windows: bool = typer.Option(True, help="Also scan windows for a pasted passage."),
) -> None:
    """Is a text ours? An exact p-value per text, and the best window inside it."""
    from stillwatch.watermark.detect import best_window, score
    from stillwatch.watermark.keys import KeyError_
    from stillwatch.watermark.tokenizer import encode

    keys, sch, tok = _keys(secrets), _scheme(scheme), _tokenizer(tokenizer)
    for item in read_texts(source, text):
        kid = key_id or item.key_id or str(keys.key_id())
        try:
            key = keys.derive(kid)
        except KeyError_ as exc:
            raise fail(str(exc)) from None
        ids = encode(item.text, tok)
        s = score(ids, sch, key)[0]
        out: dict[str, Any] = {"id": item.label, "key_id": kid, **asdict(s)}
        best = best_window(ids, sch, key) if windows else None
        out["window"] = asdict(best) if best else None
        p = min(s.p_value, best.p_adjusted if best else 1.0)
        out["watermarked"] = bool(p <= alpha)
        _emit(out)


@app.command("trace")
def trace_cmd(
    source: str | None = typer.Argument(None, help="Text file, JSONL, or - for stdin."),
    text: str | None = typer.Option(None, help="A leaked text instead of a file."),
    accounts: Path | None = typer.Option(
        None, exists=True, dir_okay=False,
        help="Candidate accounts: the spec's accounts.jsonl, or one account id per line.",
    ),
    account: list[str] = typer.Option([], help="A candidate account id (repeatable)."),
    versions: str | None = typer.Option(
        None, help="Key versions to try, e.g. 1,2 (default: every version in the secrets)."
    ),
    scheme: str = SchemeOpt,
    secrets: str | None = SecretsOpt,
    tokenizer: Path | None = TokenizerOpt,
    alpha: float = typer.Option(1e-6, min=0, max=1, help="Family-wise error of naming anyone."),
) -> None:
    """Which account's key explains a leaked text? Bonferroni over every candidate key."""
    from stillwatch.watermark.keys import KeyId
    from stillwatch.watermark.tokenizer import encode
    from stillwatch.watermark.trace import trace

    keys, sch, tok = _keys(secrets), _scheme(scheme), _tokenizer(tokenizer)
    ids_ = list(account)
    if accounts is not None:
        for line in accounts.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                rec = json.loads(line)
                if isinstance(rec.get("account_id"), str):
                    ids_.append(rec["account_id"])
            else:
                ids_.append(line)
    vs = [int(v) for v in versions.split(",")] if versions else list(keys.versions)
    candidates = []
    for v in vs:
        candidates.append(KeyId(v))
        candidates += [KeyId(v, a) for a in dict.fromkeys(ids_)]
    if len(candidates) == len(vs) and not ids_:
        typer.secho("no candidate accounts: testing the deployment keys only", err=True)
    try:
        pairs = [(str(k), keys.derive(k)) for k in candidates]
    except Exception as exc:
        raise fail(str(exc)) from None
    for item in read_texts(source, text):
        r = trace(encode(item.text, tok), sch, pairs, alpha=alpha)
        _emit({"id": item.label, **asdict(r)})


@app.command("keygen")
def keygen_cmd(
    out: Path | None = typer.Option(
        None, help="Secrets JSON to create or to add a version to (rotation); default: print."
    ),
) -> None:
    """Make a master secret, or rotate: add the next version, keep the old ones detectable."""
    from stillwatch.watermark.keys import MasterKeys

    data: dict[str, str] = {}
    if out is not None and out.exists():
        try:
            data = json.loads(out.read_text())
        except json.JSONDecodeError:
            raise fail(f"{out} is not a secrets JSON file") from None
    version = max((int(k) for k in data), default=0) + 1
    data.update(MasterKeys.generate(version))
    if out is None:
        typer.echo(json.dumps(data))
        return
    out.write_text(json.dumps(data, indent=2) + "\n")
    out.chmod(0o600)
    typer.echo(f"wrote v{version} to {out} (versions: {', '.join(sorted(data))})")


def audit_cmd(
    texts: Path = typer.Argument(
        ..., exists=True, dir_okay=False,
        help="reading: our watermarked texts; generated: the suspect's texts (JSONL or text).",
    ),
    mode: str = typer.Option("reading", help="reading (open weights) or generated (outputs)."),
    suspect: str | None = typer.Option(
        None, help="reading: the suspect model, a transformers directory, a .gguf file, or "
        "'smollm2' (the shipped model)."
    ),
    reference: str | None = typer.Option(
        None, help="the public model the suspect was fine-tuned from (same forms as "
        "--suspect). reading: the audit measures how much more probability the suspect puts "
        "on our green tokens than the reference does, which isolates what fine-tuning taught "
        "it. generated: each token the suspect wrote is set against the reference's guess "
        "there (how much greener the suspect's choices are than the reference expected)."
    ),
    temperature: float = typer.Option(
        1.0, min=0.01, help="generated, with --reference: the temperature the suspect's texts "
        "were sampled at, which the reference's guess takes too (it sharpens the test; a wrong "
        "guess weakens it, never makes a clean model look radioactive)."
    ),
    shown: Path | None = typer.Option(
        None, exists=True, dir_okay=False,
        help="generated: the prompts the suspect was given, as it saw them (their pairs are "
        "dropped; one per text, in order, they are also what the reference reads first).",
    ),
    key_id: str | None = typer.Option(None, help="The key our texts were made with (default: v1)."),
    scheme: str = SchemeOpt,
    secrets: str | None = SecretsOpt,
    tokenizer: Path | None = TokenizerOpt,
    limit: int = typer.Option(2000, help="At most this many texts."),
) -> None:
    """Was a suspect model trained on our watermarked outputs? A p-value and its evidence."""
    from stillwatch.watermark.audit import (
        audit_against_reference,
        audit_generated,
        audit_generated_against_reference,
        audit_reading,
        torch_predictor,
        torch_reference_guess,
        torch_shift_scorer,
    )
    from stillwatch.watermark.tokenizer import encode

    if mode not in ("reading", "generated"):
        raise fail(f"unknown mode {mode!r}: reading or generated")
    keys, sch, tok = _keys(secrets), _scheme(scheme), _tokenizer(tokenizer)
    key = keys.derive(key_id or str(keys.key_id()))
    items = read_texts(str(texts), None)[:limit]
    ids = [encode(t.text, tok) for t in items]
    if mode == "generated":
        prompts = [encode(t.text, tok) for t in read_texts(str(shown), None)] if shown else []
        if reference:
            # the suspect's own prompts when they pair one to one with its texts
            lead = prompts if len(prompts) == len(ids) else None
            guess = torch_reference_guess(_load_suspect(reference), temperature=temperature)
            result = audit_generated_against_reference(guess, ids, sch, key, prompts=lead,
                                                       shown=prompts)
        else:
            result = audit_generated(ids, sch, key, shown=prompts)
    else:
        if not suspect:
            raise fail("reading mode needs --suspect (the model's weights)")
        model = _load_suspect(suspect)
        if reference:
            scorer = torch_shift_scorer(model, _load_suspect(reference))
            result = audit_against_reference(scorer, ids, sch, key)
        else:
            result = audit_reading(torch_predictor(model), ids, sch, key)
    _emit(result.to_dict())


def _load_suspect(spec: str) -> Any:
    from stillwatch.watermark.model import ModelUnavailable, load_smollm2

    try:
        if spec == "smollm2":
            return load_smollm2().model
        from transformers import AutoModelForCausalLM

        path = Path(spec)
        if path.suffix == ".gguf":
            return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (ModelUnavailable, ImportError, OSError, ValueError) as exc:
        raise fail(f"cannot load the suspect model: {exc}") from None
