"""Running TorchServe: properties, process lifecycle, archives, deployment config."""
