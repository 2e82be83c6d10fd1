"""Training: ``config`` (``TrainConfig``: a run as data), ``schedule`` (phases, one-cycle), ``data``
(photos decoded as served, targets), ``trainer`` (loss, loop, checkpoints), ``evaluation`` (served
decisions, tuned thresholds), ``run`` (one run from a config), ``cli`` (``lizaalert-train``),
``default_model`` (the recipes as configs), ``seed_import``, ``learning_curve``."""
