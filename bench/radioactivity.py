"""Radioactivity: does a student trained on our watermarked answers carry the watermark, and
does the audit leave a student trained on clean answers alone?

The teacher (SmolLM2 under the green-list watermark, demo deployment key) answers real corpus
prompts (bench/teacher_cache.py, cached and resumable). Two students are trained on answers of
which 0%, 10% and 100% are watermarked (the rest unwatermarked answers to the same prompts):
a Llama-style model of at most 10M parameters from scratch with SmolLM2's tokenizer (its
embedding table holding only the ids its data uses), and a
LoRA fine-tune of SmolLM2. `stillwatch.watermark.audit` then tests each student in reading
mode (our watermarked answers fed to it) and from its generated text alone (answers to prompts
it was not trained on, with the prompts' pairs filtered). The LoRA student, a fine-tune of a
public model, is also read against that model (`audit_against_reference`: how much more of its
probability the student puts on our green tokens than SmolLM2 does, each of our answers fed
after its prompt), and its generated answers are set against SmolLM2's guess at each token
(`audit_generated_against_reference`).

    python bench/radioactivity.py                 # from the cache, both students
    python bench/radioactivity.py --small --check # the CI version (about 5 minutes): a small
                                                  # teacher run, the from-scratch student only
    python bench/radioactivity.py --audit-saved --save-students DIR --out RUN.json
                                                  # audit a run's kept answers again
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from stillwatch.watermark import GreenList
from stillwatch.watermark.audit import (
    AuditResult,
    audit_against_reference,
    audit_generated,
    audit_generated_against_reference,
    audit_reading,
    torch_predictor,
    torch_reference_guess,
    torch_shift_scorer,
)
from stillwatch.watermark.keys import MasterKeys
from teacher_cache import corpus_prompts, ensure, read

OUT = Path(__file__).parent / "results" / "radioactivity.json"
OUT_SMALL = Path(__file__).parent / "results" / "radioactivity_small.json"
FRACTIONS = (0.0, 0.1, 1.0)


def mixture(wm: list[dict], clean: list[dict], frac: float, n: int, seed: int) -> list[dict]:
    """n answers, one per prompt, a share `frac` of them watermarked."""
    rng = np.random.default_rng(seed)
    by_i_wm = {r["i"]: r for r in wm}
    by_i_clean = {r["i"]: r for r in clean}
    both = sorted(set(by_i_wm) & set(by_i_clean))
    only_wm = sorted(set(by_i_wm) - set(by_i_clean))
    k = round(frac * n)
    if frac >= 1.0:
        pick = (only_wm + both)[:n]
        return [{**by_i_wm[i], "wm": True} for i in pick]
    chosen = both[:n]
    marked = set(rng.choice(len(chosen), k, replace=False).tolist()) if k else set()
    return [
        {**by_i_wm[i], "wm": True} if j in marked else {**by_i_clean[i], "wm": False}
        for j, i in enumerate(chosen)
    ]


def served(wm: list[dict], clean: list[dict], fractions: list[float], frac: float, n: int,
           limit: int | None) -> list[dict]:
    """The watermarked answers a student at share `frac` was trained on, at most `limit` of
    them (a fixed sample); for the clean student, those of the smallest positive share, so
    that its null is tested on the very texts that make the case against that student."""
    share = frac if frac > 0 else min((f for f in fractions if f > 0), default=0.1)
    rows = [r for r in mixture(wm, clean, share, n, seed=1) if r["wm"]]
    if limit and len(rows) > limit:
        pick = np.random.default_rng(5).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(pick.tolist())]
    return rows


def sequences(rows: list[dict], tokenizer, max_len: int) -> list[list[int]]:
    from stillwatch.watermark.model import chat_ids

    out = []
    for r in rows:
        p = chat_ids(tokenizer, [{"role": "user", "content": r["prompt"]}])[-(max_len // 2) :]
        out.append((p + r["ids"] + [tokenizer.eos_token_id])[:max_len])
    return out


def train(
    model, seqs: list[list[int]], *, epochs: int, lr: float, batch: int, seed: int,
    head_lr: float | None = None,
) -> float:
    """`head_lr`: the output layer, when it is trained (`lora_smollm2(head=True)`), learns at
    its own rate: it is a full matrix, the adapters are small."""
    import torch

    torch.manual_seed(seed)
    head = model.get_output_embeddings().weight
    head = head if head.requires_grad and head_lr else None
    rest = [p for p in model.parameters() if p.requires_grad and p is not head]
    groups = [{"params": rest, "lr": lr}]
    if head is not None:
        groups.append({"params": [head], "lr": head_lr or lr})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    steps = epochs * math.ceil(len(seqs) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1
    )
    rng = np.random.default_rng(seed)
    model.train()
    loss_v = float("nan")
    done, t0 = 0, time.time()
    for _ in range(epochs):
        order = rng.permutation(len(seqs))
        for b in range(0, len(seqs), batch):
            group = [seqs[i] for i in order[b : b + batch]]
            width = max(len(s) for s in group)
            ids = torch.zeros((len(group), width), dtype=torch.long)
            labels = torch.full_like(ids, -100)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(group):
                ids[j, : len(s)] = torch.tensor(s)
                labels[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            loss_v = float(loss)
            done += 1
            if done % 5 == 0 or done == steps:
                rate = (time.time() - t0) / done
                print(f"  step {done}/{steps} loss {loss_v:.3f} ({rate:.1f} s/step)",
                      file=sys.stderr, flush=True)
    model.eval()
    return loss_v


def tiny_llama(vocab: int, eos: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        tie_word_embeddings=True, eos_token_id=eos, bos_token_id=eos, pad_token_id=eos,
    )
    return LlamaForCausalLM(cfg)


class CompactVocab:
    """The from-scratch student keeps SmolLM2's tokenizer but embeds only the ids its data
    uses (training texts, our texts it is audited on, the audit prompts): the output layer
    over 49k ids is most of a tiny model's cost, and rows for ids it never sees learn nothing.
    Ids map in before the model and back after it, so the audit sees SmolLM2 ids."""

    def __init__(self, texts: list, vocab: int, always: tuple[int, ...]) -> None:
        used = np.unique(np.concatenate([np.asarray(t, np.int64) for t in texts] + [always]))
        self.back = used.astype(np.int64)
        self.fwd = np.zeros(vocab, dtype=np.int64)  # ids never seen become the first used id
        self.fwd[used] = np.arange(used.size)
        self.size = int(used.size)

    def to_compact(self, ids):
        return self.fwd[np.asarray(ids, dtype=np.int64)]

    def predictor(self, model, pad_id: int):
        base = torch_predictor(model, pad_id=int(self.fwd[pad_id]))
        return lambda group: [
            self.back[p.astype(np.int64)].astype(np.uint64)
            for p in base([self.to_compact(g) for g in group])
        ]


def lora_smollm2(lm, layers: int | None = None, head: bool = False):
    """Rank-16 adapters on every attention and MLP projection of the top `layers` layers (all
    by default); `head`: the output layer is trained too (untied from the input embedding).
    The watermark is a preference between consecutive tokens, which the output layer can
    hold for every context at once where small adapters hold little of it."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    base = copy.deepcopy(lm.model)
    total = base.config.num_hidden_layers
    cfg = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"],
        layers_to_transform=list(range(total - (layers or total), total)),
    )
    model = get_peft_model(base, cfg)
    if head:
        out = model.get_output_embeddings()
        out.weight = torch.nn.Parameter(out.weight.detach().clone(), requires_grad=True)
    return model


def student_answers(
    model, lm, prompts: list[str], max_new: int, seed: int, vocab: CompactVocab | None = None,
    temperature: float = 1.0,
) -> list[np.ndarray]:
    import torch

    from stillwatch.watermark.model import chat_ids

    torch.manual_seed(seed)
    tok = lm.tokenizer
    inward = vocab.to_compact if vocab else (lambda x: np.asarray(x, dtype=np.int64))
    outward = (lambda r: vocab.back[np.asarray(r, np.int64)]) if vocab else np.asarray
    pad, eos = (int(inward([tok.pad_token_id])[0]), int(inward([tok.eos_token_id])[0]))
    out = []
    for b in range(0, len(prompts), 16):
        group = [
            inward(chat_ids(tok, [{"role": "user", "content": p}])[-256:])
            for p in prompts[b : b + 16]
        ]
        width = max(len(g) for g in group)
        ids = torch.full((len(group), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, g in enumerate(group):
            ids[j, width - len(g) :] = torch.tensor(g)
            mask[j, width - len(g) :] = 1
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=True,
                temperature=temperature, top_k=0, top_p=1.0, pad_token_id=pad, eos_token_id=eos,
            )
        for row in gen[:, width:].tolist():
            row = row[: row.index(eos)] if eos in row else row
            out.append(np.asarray(outward(row), dtype=np.uint64))
    return out


def generated_audits(
    lm, prompts: list[str], gen: list[np.ndarray], scheme, key: int, temperature: float,
    against: bool,
) -> dict[str, AuditResult]:
    """The students' answers to held-out prompts, audited from the text alone (the prompts'
    pairs dropped) and, with `against`, also weighted by SmolLM2's openness and set against
    SmolLM2's guess at each token (at the temperature they were sampled at)."""
    from stillwatch.watermark.model import chat_ids

    shown = [np.asarray(lm.tokenizer(p)["input_ids"], dtype=np.uint64) for p in prompts]
    out = {"plain": audit_generated(gen, scheme, key, shown=shown)}
    if against:
        leads = [chat_ids(lm.tokenizer, [{"role": "user", "content": p}])[-256:]
                 for p in prompts]
        out["weighted"] = audit_generated(gen, scheme, key, shown=shown,
                                          weights=openness(lm, leads, gen))
        guess = torch_reference_guess(lm.model, pad_id=lm.tokenizer.pad_token_id,
                                      temperature=temperature)
        out["vs_reference"] = audit_generated_against_reference(
            guess, gen, scheme, key, prompts=[np.asarray(x, np.uint64) for x in leads],
            shown=shown,
        )
    return out


def generated_fields(by_temperature: dict[float, dict[str, AuditResult]]) -> dict:
    """A row's generated-mode columns: those of the first temperature, and every one's."""
    def of(a: dict[str, AuditResult]) -> dict:
        plain, weighted, ref = a["plain"], a.get("weighted"), a.get("vs_reference")
        return {
            "p": plain.p_value, "scored": plain.scored,
            "green_share": plain.statistic / max(plain.scored, 1),
            "weighted_p": weighted.p_value if weighted else None,
            "weighted_green_share": weighted.statistic if weighted else None,
            "vs_reference_p": ref.p_value if ref else None,
            "vs_reference_shift": ref.statistic if ref else None,
            "vs_reference_evidence": ref.evidence if ref else None,
        }

    first, *_ = by_temperature
    top = of(by_temperature[first])
    return {
        "generated_p": top["p"], "generated_scored": top["scored"],
        "generated_green_share": top["green_share"],
        "generated_weighted_p": top["weighted_p"],
        "generated_weighted_green_share": top["weighted_green_share"],
        "generated_vs_reference_p": top["vs_reference_p"],
        "generated_vs_reference_shift": top["vs_reference_shift"],
        "generated_vs_reference_evidence": top["vs_reference_evidence"],
        "generated_temperature": first,
        "generated_by_temperature": {f"{t:g}": of(a) for t, a in by_temperature.items()},
    }


def print_generated(row: dict) -> None:
    for t, a in row["generated_by_temperature"].items():
        print(f"      generated at temperature {t}: p {a['p']:9.2e} ({a['scored']} pairs, "
              f"green {a['green_share']:.3f})", flush=True)
        if a["weighted_p"] is not None:
            print(f"        weighted by openness: p {a['weighted_p']:9.2e} (green "
                  f"{a['weighted_green_share']:.4f})", flush=True)
        if a["vs_reference_p"] is not None:
            print(f"        against SmolLM2's guess: p {a['vs_reference_p']:9.2e} (shift "
                  f"{100 * a['vs_reference_shift']:+.3f} points a token)", flush=True)
            for line in a["vs_reference_evidence"]:
                print(f"          {line}", flush=True)


def audit_saved(args, lm, scheme, key: int) -> None:
    """Audit the generated answers a run kept (`--save-students`) again, and update that
    run's rows in `--out`: the audits changed, the students and their answers did not."""
    doc = json.loads(args.out.read_text())
    for row in doc["rows"]:
        by_temperature = {}
        for t in row["generated_by_temperature"]:
            path = (args.save_students /
                    f"generated-{row['student']}-{row['watermarked_share']:g}-T{t}.jsonl")
            if not path.exists():
                raise SystemExit(f"{path} is missing: the run kept no answers for this row")
            kept = [json.loads(line) for line in path.read_text().splitlines()]
            gen = [np.asarray(k["ids"], dtype=np.uint64) for k in kept]
            by_temperature[float(t)] = generated_audits(
                lm, [k["prompt"] for k in kept], gen, scheme, key, float(t),
                against=not doc["small"],
            )
        row.update(generated_fields(by_temperature))
        print(f"{row['student']:5s} wm {row['watermarked_share']:4.0%}", flush=True)
        print_generated(row)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"updated {args.out}")


def keep_answers(path: Path, prompts: list[str], answers: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for p, a in zip(prompts, answers, strict=True):
            f.write(json.dumps({"prompt": p, "ids": a.tolist()}) + "\n")


def openness(lm, prompts: list[list[int]], texts: list[np.ndarray]) -> list[np.ndarray]:
    """How open SmolLM2 finds each token of the students' answers (after their prompts)."""
    from stillwatch.watermark.audit import torch_openness

    weigh = torch_openness(lm.model, pad_id=lm.tokenizer.pad_token_id)
    out: list[np.ndarray] = []
    for b in range(0, len(texts), 8):
        out += weigh([np.asarray(p, np.uint64) for p in prompts[b : b + 8]], texts[b : b + 8])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="the CI version (about 5 minutes)")
    ap.add_argument("--train", type=int, default=200, help="answers per student")
    ap.add_argument("--students", default="tiny,lora")
    ap.add_argument("--audit-prompts", type=int, default=48)
    ap.add_argument("--out", type=Path, help=f"default {OUT.name} ({OUT_SMALL.name} with --small)")
    ap.add_argument("--cache", type=Path, help="teacher cache of the small run "
                    "(default bench/.cache/teacher-small)")
    ap.add_argument("--lora-epochs", type=int, default=1)
    ap.add_argument("--lora-lr", type=float, default=1e-3)
    ap.add_argument("--lora-layers", type=int, help="adapters on the top N layers (default all)")
    ap.add_argument("--lora-head", action="store_true", help="train the output layer too")
    ap.add_argument("--head-lr", type=float, default=2e-4, help="the output layer's rate")
    ap.add_argument("--gen-tokens", type=int, default=128,
                    help="tokens each student writes per held-out prompt")
    ap.add_argument("--audit-texts", type=int,
                    help="read at most this many of our answers (default all)")
    ap.add_argument("--fractions", default="0,0.1,1",
                    help="watermarked shares to train students on")
    ap.add_argument("--tiny-epochs", type=int, default=20)
    ap.add_argument(
        "--gen-temperatures", default="1.0",
        help="sampling temperatures of the students' generated answers; the first is the "
             "one the check and the table use, the others are reported beside it",
    )
    ap.add_argument(
        "--read-served", action="store_true",
        help="read each student on the watermarked answers in its own training data (what "
             "its accounts were served and harvested, which per-account keys and telemetry "
             "name); the clean student on the smallest positive share's answers",
    )
    ap.add_argument("--save-students", type=Path,
                    help="directory to keep each LoRA adapter in, for later audits")
    ap.add_argument("--audit-saved", action="store_true",
                    help="train nothing: audit again the generated answers a run kept in "
                    "--save-students, updating that run's --out")
    ap.add_argument(
        "--check", action="store_true",
        help="exit 1 unless p > 0.01 at 0%% (every test) and p < 1e-5 at 100%% in both "
        "modes (against SmolLM2 for its fine-tune)",
    )
    args = ap.parse_args()
    args.out = args.out or (OUT_SMALL if args.small else OUT)

    import torch

    from stillwatch.watermark.model import load_smollm2

    torch.set_num_threads(2)
    t_start = time.time()
    scheme, key = GreenList(), MasterKeys.load().derive("v1")
    if args.small:
        # a fresh teacher run of its own, at a scale CI can afford
        import teacher_cache

        teacher_cache.CACHE = args.cache or teacher_cache.CACHE.parent / "teacher-small"
        teacher_cache.MAX_NEW = 96
        n_train, students, n_audit, epochs_tiny, max_len = 48, ["tiny"], 64, 30, 160
        wm = ensure("greenlist", n_train, batch=24)
        clean = ensure("none", n_train, batch=24)
    else:
        n_train, students, n_audit, epochs_tiny = (
            args.train, args.students.split(","), args.audit_prompts, args.tiny_epochs,
        )
        max_len = 384
        wm, clean = read("greenlist"), read("none")
    lm = load_smollm2(threads=2)
    if args.audit_saved:
        audit_saved(args, lm, scheme, key)
        if args.check:
            check(json.loads(args.out.read_text())["rows"])
        return
    read_rows = wm[: args.audit_texts] if args.audit_texts else wm
    ours = [np.asarray(r["ids"], dtype=np.uint64) for r in read_rows]  # what we served, marked
    used = {r["i"] for r in wm} | {r["i"] for r in clean}
    prompts = corpus_prompts(max(used) + 2000)
    held_out = [p for i, p in enumerate(prompts) if i not in used][-n_audit:]
    from stillwatch.watermark.model import chat_ids

    vocab = None
    if "tiny" in students:
        seen = [s for frac in FRACTIONS
                for s in sequences(mixture(wm, clean, frac, n_train, seed=1), lm.tokenizer,
                                   max_len)]
        seen += [*ours, *(chat_ids(lm.tokenizer, [{"role": "user", "content": p}])[-256:]
                          for p in held_out)]
        vocab = CompactVocab(seen, lm.vocab_size,
                             (lm.tokenizer.pad_token_id, lm.tokenizer.eos_token_id))
    results = []
    fractions = [float(f) for f in args.fractions.split(",")]
    temperatures = [float(t) for t in args.gen_temperatures.split(",")]
    for student in students:
        for frac in fractions:
            t0 = time.time()
            data = mixture(wm, clean, frac, n_train, seed=1)
            seqs = sequences(data, lm.tokenizer, max_len)
            if args.read_served:
                read_rows = served(wm, clean, fractions, frac, n_train, args.audit_texts)
                ours = [np.asarray(r["ids"], dtype=np.uint64) for r in read_rows]
            if student == "tiny":
                eos = lm.tokenizer.eos_token_id
                if vocab:
                    model = tiny_llama(vocab.size, int(vocab.to_compact([eos])[0]))
                    fit_on = [vocab.to_compact(q).tolist() for q in seqs]
                else:
                    model, fit_on = tiny_llama(lm.vocab_size, eos), seqs
                loss = train(model, fit_on, epochs=epochs_tiny, lr=3e-3, batch=8, seed=2)
            else:
                model = lora_smollm2(lm, args.lora_layers, args.lora_head)
                loss = train(model, seqs, epochs=args.lora_epochs, lr=args.lora_lr, batch=8,
                             seed=2, head_lr=args.head_lr if args.lora_head else None)
                if args.save_students:
                    model.save_pretrained(args.save_students / f"lora-{frac:g}")
                    if args.lora_head:
                        torch.save(model.get_output_embeddings().weight.detach(),
                                   args.save_students / f"lora-{frac:g}" / "head.pt")
                model = model.merge_and_unload()
            params = sum(p.numel() for p in model.parameters())
            pad = lm.tokenizer.pad_token_id
            predictor = (vocab.predictor(model, pad) if vocab and student == "tiny"
                         else torch_predictor(model, pad_id=pad))
            reading = audit_reading(predictor, ours, scheme, key)
            # a fine-tune of a public model: read it against that model too, each of our
            # answers after its prompt, as the student was trained
            against = None
            if student == "lora":
                leads = [chat_ids(lm.tokenizer, [{"role": "user", "content": r["prompt"]}])
                         [-(max_len // 2):] for r in read_rows]
                against = audit_against_reference(
                    torch_shift_scorer(model, lm.model, pad_id=pad),
                    [np.asarray(lead + r["ids"], dtype=np.uint64)
                     for lead, r in zip(leads, read_rows, strict=True)],
                    scheme, key, given=[len(lead) for lead in leads],
                )
            by_temperature = {}
            for temperature in temperatures:
                gen = student_answers(model, lm, held_out, args.gen_tokens, seed=3,
                                      vocab=vocab if student == "tiny" else None,
                                      temperature=temperature)
                by_temperature[temperature] = generated_audits(
                    lm, held_out, gen, scheme, key, temperature, against=not args.small
                )
                if args.save_students:  # for audits run later without generating again
                    keep_answers(args.save_students / f"generated-{student}-{frac:g}-"
                                 f"T{temperature:g}.jsonl", held_out, gen)
            wm_tokens = sum(len(r["ids"]) for r in data if r["wm"])
            row = {
                "student": student, "params": params, "watermarked_share": frac,
                "train_answers": len(data), "train_tokens": sum(len(s) for s in seqs),
                "watermarked_tokens": wm_tokens, "final_loss": loss,
                "read_texts": len(ours), "read_served": args.read_served,
                "reading_p": reading.p_value, "reading_scored": reading.scored,
                "reading_green_share": reading.statistic / max(reading.scored, 1),
                "reading_vs_reference_p": against.p_value if against else None,
                "reading_vs_reference_scored": against.scored if against else None,
                "reading_vs_reference_green_mass_shift": against.statistic if against else None,
                "reading_vs_reference_evidence": against.evidence if against else None,
                **generated_fields(by_temperature),
                "seconds": round(time.time() - t0, 1),
                "epochs": epochs_tiny if student == "tiny" else args.lora_epochs,
            }
            results.append(row)
            print(
                f"{student:5s} {params / 1e6:6.1f}M  wm {frac:4.0%}  loss {loss:5.2f}  "
                f"reading p {reading.p_value:9.2e} ({reading.scored} pairs, green "
                f"{row['reading_green_share']:.3f})  {row['seconds']:.0f}s",
                flush=True,
            )
            if against is not None:
                print(f"      reading against SmolLM2 (green mass shift): p "
                      f"{against.p_value:9.2e} ({against.scored} positions, "
                      f"{100 * against.statistic:+.3f} points)", flush=True)
                for line in against.evidence:
                    print(f"        {line}", flush=True)
            print_generated(row)
            args.out.parent.mkdir(exist_ok=True)
            args.out.write_text(json.dumps({"small": args.small, "rows": results}, indent=2))
    print(f"total {time.time() - t_start:.0f}s; wrote {args.out}")
    if args.check:
        check(results)


# each mode's test fixed in advance: against SmolLM2 for its fine-tune, plain for the student
# trained from scratch (SmolLM2 is no reference for it)
PRIMARY = {"lora": ("reading_vs_reference_p", "generated_vs_reference_p"),
           "tiny": ("reading_p", "generated_p")}
NULLS = ("reading_p", "reading_vs_reference_p", "generated_p", "generated_weighted_p",
         "generated_vs_reference_p")


def check(rows: list[dict]) -> None:
    """Exit 1 unless every test reported on a clean student gives p > 0.01 and each mode's
    primary test (`PRIMARY`) gives p < 1e-5 at 100%."""
    bad = []
    for r in rows:
        who = f"{r['student']} at {r['watermarked_share']:.0%}"
        if r["watermarked_share"] == 0.0:
            bad += [f"{who}: {k} {r[k]:.3g}" for k in NULLS
                    if r.get(k) is not None and r[k] <= 0.01]
        if r["watermarked_share"] == 1.0:
            for k in PRIMARY[r["student"]]:
                if r.get(k) is None or r[k] >= 1e-5:
                    bad.append(f"{who}: {k} {r.get(k)}")
    if bad:
        raise SystemExit("radioactivity check failed: " + "; ".join(bad))
    print("radioactivity check passed")

if __name__ == "__main__":
    main()
