"""Server-neutral request handling: settings, request parsing, batches, errors (no TorchServe import)."""
