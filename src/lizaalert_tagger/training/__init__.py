"""Training: configs and recipes, data, the trainer, evaluation, the default model, seed import, learning curve."""
