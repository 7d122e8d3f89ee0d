"""Red team: simulated benign users and distillation campaigns over real prompt corpora."""
