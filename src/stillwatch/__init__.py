"""stillwatch: protect a model served over an API from distillation attacks."""

__version__ = "0.1.0"
