"""Detection: decide from past traffic whether an account is harvesting the model."""

from stillwatch.detect.base import AllowAllDetector, Decision, Detector, RequestContext

__all__ = ["AllowAllDetector", "Decision", "Detector", "RequestContext"]
