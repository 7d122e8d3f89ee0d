"""The account risk model: a logistic regression over the behaviour features, with the
operating thresholds beside it. `fit` learns the weights from labelled snapshots (simulated
campaigns against real-corpus personas); `calibrate` moves only the thresholds, on an
operator's own benign traffic, so the shipped weights keep their meaning."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from stillwatch.detect.account import FEATURES


@dataclass(frozen=True)
class RiskModel:
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float = 0.9  # flag (review) at or above
    block_threshold: float = 0.999  # high-confidence bar for automatic blocks
    min_requests: int = 5  # no account is judged on fewer
    notes: dict[str, Any] | None = None

    def score(self, x: Sequence[float]) -> float:
        z = self.bias
        for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True):
            z += w * (v - m) / s
        if z < -40:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def contributions(self, x: Sequence[float]) -> list[tuple[float, str]]:
        """Each feature's push on the log-odds, largest first: the raw material of reasons."""
        out = [
            (w * (v - m) / s, name)
            for name, w, v, m, s in zip(
                FEATURES, self.weights, x, self.mean, self.scale, strict=True
            )
        ]
        return sorted(out, reverse=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "threshold": self.threshold,
            "block_threshold": self.block_threshold,
            "min_requests": self.min_requests,
            "notes": self.notes or {},
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None, *, corpus_signal: bool = True) -> RiskModel:
        """`path`, else the shipped model for the configuration: with the corpus-membership
        signal, or the one fit without it (an operator without corpora)."""
        name = "risk_model.json" if corpus_signal else "risk_model_nocorpus.json"
        text = (
            Path(path).read_text()
            if path
            else resources.files("stillwatch.defaults").joinpath(name).read_text()
        )
        try:
            d = json.loads(text)
            if tuple(d["features"]) != FEATURES:
                raise ValueError(
                    f"model features {d['features']} differ from this version's {list(FEATURES)}"
                )
            return cls(
                tuple(d["weights"]),
                float(d["bias"]),
                tuple(d["mean"]),
                tuple(d["scale"]),
                float(d["threshold"]),
                float(d["block_threshold"]),
                int(d.get("min_requests", 5)),
                d.get("notes"),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path or 'shipped risk model'}: not a risk model ({exc})") from None

    def with_thresholds(
        self,
        threshold: float,
        block_threshold: float | None = None,
        notes: dict[str, Any] | None = None,
    ) -> RiskModel:
        return replace(
            self,
            threshold=threshold,
            block_threshold=max(threshold, block_threshold or self.block_threshold),
            notes={**(self.notes or {}), **(notes or {})},
        )


def fit(x: Sequence[Sequence[float]], y: Sequence[int], c: float = 1.0) -> RiskModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    a = np.asarray(x, dtype=float)
    mean = a.mean(axis=0)
    scale = a.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    lr.fit((a - mean) / scale, np.asarray(y))
    return RiskModel(
        tuple(round(float(w), 5) for w in lr.coef_[0]),
        round(float(lr.intercept_[0]), 5),
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
    )
