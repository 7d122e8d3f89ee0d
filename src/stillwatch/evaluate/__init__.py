"""The figures the product is judged by, from verdicts, labels and (optionally) events."""

from stillwatch.evaluate.metrics import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]
