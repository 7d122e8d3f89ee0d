"""Watermark detection from token ids: exact p-values, an honest null, de-duplication,
windows, many texts at once, and traitor tracing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stillwatch.watermark import GreenList, GumbelMax, best_window, score, score_many, trace
from stillwatch.watermark.keys import KeyError_, KeyId, MasterKeys
from wmsynth import random_tokens, watermarked

KEYS = MasterKeys({1: b"k" * 32, 2: b"q" * 32})
KEY = KEYS.derive("v1")


@pytest.mark.parametrize("scheme", [GreenList(), GumbelMax(), GreenList(width=3)])
def test_watermarked_text_is_found_and_other_keys_see_nothing(scheme) -> None:
    rng = np.random.default_rng(1)
    toks = watermarked(200, scheme, KEY, rng)
    assert score(toks, scheme, KEY)[0].p_value < 1e-12
    others = score(toks, scheme, [KEYS.derive(f"v1:acct{i}") for i in range(50)])
    assert min(s.p_value for s in others) > 1e-4


@pytest.mark.parametrize("scheme", [GreenList(), GreenList(gamma=0.5), GumbelMax()])
def test_null_tail_shares_stay_within_their_binomial_interval(scheme) -> None:
    rng = np.random.default_rng(2)
    texts = [random_tokens(int(rng.integers(20, 300)), rng) for _ in range(3000)]
    _, _, p = score_many(texts, scheme, KEY)
    for alpha in (0.1, 0.01):
        hits = int((p <= alpha).sum())
        lo, hi = stats.binomtest(hits, p.size, alpha).proportion_ci(0.999)
        assert lo <= alpha <= hi, (alpha, hits)
    assert (p <= 1.0).all() and (p >= 0.0).all()


def test_greenlist_p_value_is_the_exact_binomial_tail() -> None:
    s = GreenList(gamma=0.25)
    # 40 green of 100: P(X >= 40) for Binomial(100, 0.25), no normal approximation
    p = float(s.pvalues(np.array([100]), np.array([40]))[0])
    assert p == pytest.approx(stats.binom.sf(39, 100, 0.25), rel=1e-12)
    assert float(s.pvalues(np.array([100]), np.array([100]))[0]) == pytest.approx(0.25**100)


def test_repeated_phrases_count_once() -> None:
    rng = np.random.default_rng(3)
    phrase = watermarked(30, GreenList(), KEY, rng)
    once = score(phrase, GreenList(), KEY)[0]
    many = score(np.concatenate([phrase] * 20), GreenList(), KEY)[0]
    # the repeats add at most the junction pairs, not 20 times the evidence
    assert many.scored <= once.scored + 2
    assert many.p_value > once.p_value * 1e-3


def test_a_pasted_passage_is_found_by_the_window_scan() -> None:
    rng = np.random.default_rng(4)
    passage = watermarked(100, GreenList(), KEY, rng)
    text = np.concatenate([random_tokens(600, rng), passage, random_tokens(400, rng)])
    whole = score(text, GreenList(), KEY)[0]
    win = best_window(text, GreenList(), KEY)
    assert win is not None
    assert win.p_adjusted < 1e-8 < whole.p_value * 1e-3 or win.p_adjusted < whole.p_value
    assert win.start >= 550 and win.end <= 750  # it points at the passage
    # and on text with no passage the adjusted window p-value is not small
    clean = best_window(random_tokens(1100, rng), GreenList(), KEY)
    assert clean is not None and clean.p_adjusted > 1e-4


@pytest.mark.parametrize("scheme", [GreenList(), GreenList(width=2), GumbelMax()])
@pytest.mark.parametrize("huge_ids", [False, True])
def test_score_many_matches_score_text_by_text(scheme, huge_ids: bool) -> None:
    """Both de-duplication paths (token ids packed into one word, or ids too wide for that)
    give what scoring each text alone gives, repeated pairs included."""
    rng = np.random.default_rng(5)
    texts = [watermarked(int(rng.integers(5, 80)), scheme, KEY, rng) for _ in range(20)]
    texts += [random_tokens(50, rng), np.array([], dtype=np.uint64), np.array([7], np.uint64)]
    texts += [random_tokens(3000, rng), random_tokens(47, rng)]  # rows of other widths
    texts += [np.tile(random_tokens(6, rng), 9)]  # one phrase repeated: 6 distinct pairs
    if huge_ids:
        texts = [t + np.uint64(1 << 40) for t in texts]
    n, stat, p = score_many(texts, scheme, KEY)
    assert n[-1] <= 6
    for i, t in enumerate(texts):
        one = score(t, scheme, KEY)[0]
        assert n[i] == one.scored
        assert stat[i] == pytest.approx(one.statistic, rel=1e-12)  # summed in another order
        assert p[i] == pytest.approx(one.p_value)
        assert one.p_value <= one.p_upper


def test_bad_token_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="flat"):
        score(np.zeros((2, 2), dtype=np.int64), GreenList(), KEY)
    with pytest.raises(ValueError, match="non-negative"):
        score(np.array([1, -2]), GreenList(), KEY)
    with pytest.raises(ValueError, match="gamma"):
        GreenList(gamma=1.5)


def test_tracing_names_the_account_whose_key_wrote_the_text() -> None:
    rng = np.random.default_rng(6)
    accounts = [f"acct_{i:04d}" for i in range(300)]
    cands = [(str(KeyId(1, a)), KEYS.derive(KeyId(1, a))) for a in accounts]
    for i in (0, 17, 299):
        toks = watermarked(300, GreenList(), cands[i][1], rng, k=3)
        r = trace(toks, GreenList(), cands, alpha=1e-6)
        assert r.named == cands[i][0], r
        assert r.top[0].key_id == cands[i][0]
    named = [trace(random_tokens(300, rng), GreenList(), cands).named for _ in range(30)]
    assert named == [None] * 30


def test_keys_derive_per_account_and_rotation_keeps_old_versions() -> None:
    a1 = KEYS.derive("v1:alice")
    assert a1 == KEYS.derive(KeyId(1, "alice"))  # deterministic: nothing stored per account
    assert len({a1, KEYS.derive("v1:bob"), KEYS.derive("v1"), KEYS.derive("v2:alice")}) == 4
    assert KEYS.current == 2 and str(KEYS.key_id("alice")) == "v2:alice"
    assert KEYS.derive("v1:alice") == a1  # text from before the rotation still checks
    with pytest.raises(KeyError_, match="v3"):
        KEYS.derive("v3")
    for bad in ("1", "vx", "v1:", ""):
        with pytest.raises(KeyError_):
            KeyId.parse(bad)


def test_secrets_load_from_a_string_or_a_file(tmp_path, monkeypatch) -> None:
    s = "1=" + "ab" * 16 + ",2=" + "cd" * 16
    keys = MasterKeys.load(s)
    assert keys.current == 2
    f = tmp_path / "secrets.json"
    f.write_text('{"1": "' + "ab" * 16 + '", "2": "' + "cd" * 16 + '"}')
    assert MasterKeys.load(str(f)).derive("v2:x") == keys.derive("v2:x")
    monkeypatch.setenv("STILLWATCH_WATERMARK_SECRETS", s)
    assert MasterKeys.load().derive("v1") == keys.derive("v1")
    with pytest.raises(KeyError_, match="shorter"):
        MasterKeys.load("1=abcd")
    with pytest.raises(KeyError_):
        MasterKeys.load("1=nothex")


@pytest.mark.parametrize("width", [1, 2])
def test_green_list_processor_biases_exactly_the_tokens_the_detector_counts(width: int) -> None:
    """Generation and detection share one hash: the logits the processor raises for a row are
    the tokens the detector scores green after that row's context, under that row's key; a
    row without a key is left alone."""
    torch = pytest.importorskip("torch")
    from stillwatch.watermark import hashing
    from stillwatch.watermark.generation import GreenListProcessor
    from wmsynth import next_context

    scheme = GreenList(width=width)
    keys = [KEY, None, KEYS.derive(KeyId(1, "acct_0007"))]
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 2000, size=(3, 6))
    proc = GreenListProcessor(scheme, keys, vocab_size=2048)
    out = proc(torch.tensor(ids), torch.zeros((3, 2000))).numpy()
    vocab = np.arange(2000, dtype=np.uint64)
    for row, key in enumerate(keys):
        if key is None:
            assert not out[row].any()
            continue
        ctx = next_context([int(x) for x in ids[row]], width)
        keyed = hashing.keyed(hashing.pair_hashes(np.full(2000, ctx), vocab), np.uint64(key))
        green = keyed < hashing.threshold(scheme.gamma)
        assert np.array_equal(out[row] > 0, green)
        assert np.allclose(out[row][green], scheme.delta)
        assert 0.2 < green.mean() < 0.3


def test_gumbel_keys_each_context_once_per_answer_so_answers_do_not_loop() -> None:
    """A flat 40-token "model" under width 1: the first visit of a context takes the keyed
    argmax the detector scores; a context met again is sampled, so one context is followed by
    several tokens (a keyed choice on every visit would make the answer a cycle)."""
    torch = pytest.importorskip("torch")
    from stillwatch.watermark import hashing
    from stillwatch.watermark.generation import GumbelProcessor
    from wmsynth import next_context

    torch.manual_seed(0)
    scheme, v = GumbelMax(), 40
    proc = GumbelProcessor(scheme, [KEY], vocab_size=v)
    seq = [3]
    visits: dict[int, list[int]] = {}
    for _ in range(400):
        out = proc(torch.tensor([seq]), torch.zeros((1, v)))
        token = int(out[0].argmax())
        assert out[0, token] == 0 and torch.isinf(out[0]).sum() == v - 1
        visits.setdefault(seq[-1], []).append(token)
        seq.append(token)
    vocab = np.arange(v, dtype=np.uint64)
    for prev, followers in visits.items():
        ctx = next_context([prev], 1)
        keyed = hashing.keyed(hashing.pair_hashes(np.full(v, ctx), vocab), np.uint64(KEY))
        assert followers[0] == int(np.argmax(hashing.unit(keyed)))  # the keyed first visit
    assert max(len(set(f)) for f in visits.values()) > 3  # recurring contexts are sampled
    assert score(np.array(seq, dtype=np.uint64), scheme, KEY)[0].p_value < 1e-6


def test_schemes_are_chosen_by_name_or_settings_and_bad_settings_are_refused() -> None:
    from stillwatch.watermark.schemes import scheme_from

    assert scheme_from("gumbel") == GumbelMax()
    assert scheme_from({"name": "greenlist", "delta": 3.0}) == GreenList(delta=3.0)
    with pytest.raises(ValueError, match=r"takes .*delta"):
        scheme_from({"name": "greenlist", "bias": 3.0})
    with pytest.raises(ValueError, match="unknown watermark scheme"):
        scheme_from("sepia")


def test_upstream_refuses_a_bad_scheme_before_loading_the_model() -> None:
    from typer.testing import CliRunner

    from stillwatch.cli.main import app

    r = CliRunner().invoke(app, ["upstream", "--backend", "smollm2", "--scheme", "gumbel",
                                 "--delta", "3"])
    assert r.exit_code != 0 and "takes" in r.output and "Traceback" not in r.output
