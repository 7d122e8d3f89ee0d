"""Output watermarking and attribution: keyed schemes, model-free detection, traitor tracing
and the suspect-model audit. Detection needs numpy and the shipped tokenizer only; generation
(`stillwatch.watermark.generation`) needs the `model` extra."""

from stillwatch.watermark.detect import Score, WindowScore, best_window, score, score_many
from stillwatch.watermark.keys import KeyId, MasterKeys
from stillwatch.watermark.schemes import GreenList, GumbelMax, Scheme, scheme_from
from stillwatch.watermark.trace import TraceResult, trace

__all__ = [
    "GreenList",
    "GumbelMax",
    "KeyId",
    "MasterKeys",
    "Scheme",
    "Score",
    "TraceResult",
    "WindowScore",
    "best_window",
    "scheme_from",
    "score",
    "score_many",
    "trace",
]
