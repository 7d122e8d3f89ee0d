"""The two watermark schemes: what a key does to generation and how a token is scored.

`GreenList` (Kirchenbauer et al.): a keyed hash of (context, token) puts a share `gamma` of
the vocabulary on a green list for each context; generation adds `delta` to green logits;
detection counts green tokens, and under no watermark the count is Binomial(n, gamma).

`GumbelMax` (Aaronson; distortion-free): each (context, token) gets a keyed uniform r, and the
next token is argmax r ** (1 / p) over the model's probabilities p, which is an exact sample
from p over the randomness of the key. Detection sums -ln(1 - r) of the tokens seen, which is
Gamma(n, 1) when the text is not ours.

Both score only distinct (context, token) pairs, so repeated phrases cannot inflate evidence,
and both give exact p-values (no normal approximation in the tails).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
from scipy import special, stats

from stillwatch.watermark import hashing


@dataclass(frozen=True)
class GreenList:
    gamma: float = 0.25
    delta: float = 2.0
    width: int = 1
    name: Literal["greenlist"] = "greenlist"

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie in (0, 1)")
        if self.width < 1:
            raise ValueError("context width must be at least 1")

    def token_scores(self, keyed: np.ndarray) -> np.ndarray:
        return (keyed < hashing.threshold(self.gamma)).astype(np.float64)

    def pvalues(
        self, n: np.ndarray, stat: np.ndarray, u: np.ndarray | None = None
    ) -> np.ndarray:
        """P(Binomial(n, gamma) >= green count), exactly; with `u` (uniform in (0, 1)), the
        randomised p-value P(X > k) + u P(X = k), which is exactly uniform under the null, so
        that the share of texts at p <= alpha is alpha itself rather than somewhat below."""
        n = np.asarray(n, dtype=np.float64)
        k = np.rint(np.asarray(stat, dtype=np.float64))
        if u is None:
            p = stats.binom.sf(k - 1, n, self.gamma)
        else:
            p = stats.binom.sf(k, n, self.gamma) + np.asarray(u) * stats.binom.pmf(
                k, n, self.gamma
            )
        return np.where(n > 0, np.clip(p, 0.0, 1.0), 1.0)

    def expected(self, n: np.ndarray) -> np.ndarray:
        return np.asarray(n) * self.gamma

    def score_moments(self) -> tuple[float, float]:
        """Mean and variance of one token's score when the text is not ours."""
        return self.gamma, self.gamma * (1.0 - self.gamma)

    def logits_shift(self, keyed_vocab: np.ndarray) -> np.ndarray:
        """What to add to the logits for one context, from the keyed hashes of its vocabulary."""
        return self.token_scores(keyed_vocab) * self.delta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GumbelMax:
    width: int = 1
    name: Literal["gumbel"] = "gumbel"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError("context width must be at least 1")

    def token_scores(self, keyed: np.ndarray) -> np.ndarray:
        return -np.log1p(-hashing.unit(keyed))

    def pvalues(
        self, n: np.ndarray, stat: np.ndarray, u: np.ndarray | None = None
    ) -> np.ndarray:
        """P(Gamma(n, 1) >= score sum): the regularised upper incomplete gamma function
        (continuous, so `u` is not needed)."""
        n = np.asarray(n, dtype=np.float64)
        s = np.asarray(stat, dtype=np.float64)
        p = special.gammaincc(np.maximum(n, 1.0), s)
        return np.where(n > 0, np.clip(p, 0.0, 1.0), 1.0)

    def expected(self, n: np.ndarray) -> np.ndarray:
        return np.asarray(n, dtype=np.float64)

    def score_moments(self) -> tuple[float, float]:
        """-ln(1 - r) of a uniform r is Exp(1): mean 1, variance 1."""
        return 1.0, 1.0

    def choose(self, keyed_vocab: np.ndarray, probs: np.ndarray) -> int:
        """The token argmax r ** (1/p): log r / p, with zero-probability tokens excluded."""
        r = hashing.unit(keyed_vocab)
        with np.errstate(divide="ignore"):
            score = np.where(probs > 0, np.log(r) / probs, -np.inf)
        return int(np.argmax(score))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Scheme = GreenList | GumbelMax


def scheme_from(spec: dict[str, Any] | str | None) -> Scheme:
    """From a name or a dict like {"name": "greenlist", "gamma": 0.25, "delta": 2.0}."""
    if spec is None:
        return GreenList()
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", "greenlist")
    kinds: dict[str, type[GreenList] | type[GumbelMax]] = {
        "greenlist": GreenList, "gumbel": GumbelMax,
    }
    if name not in kinds:
        raise ValueError(f"unknown watermark scheme {name!r} (greenlist or gumbel)")
    try:
        return kinds[name](**spec)
    except TypeError:
        known = ", ".join(f.name for f in fields(kinds[name]))
        raise ValueError(
            f"watermark scheme {name!r} takes {known}; got {', '.join(sorted(spec))}"
        ) from None
