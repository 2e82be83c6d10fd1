"""LizaAlert photo tagger: 11 attributes of search-and-rescue photos, served by TorchServe.

Subpackages, from the bottom layer up (``.importlinter`` enforces the order; docs/architecture.md):

- ``common``: torch-free foundations (the attribute spec, file names, photo formats, labels CSV,
  EXIF, scoring, overlays);
- ``vision``: the network and its pure pixel path (model, preprocessing, answers, int8, Grad-CAM);
- ``serving``: server-neutral request handling behind the thin TorchServe adapter in ``handler/``;
- ``client``: the HTTP client, the field report and the ``tagctl`` command line, without torch;
- ``scenes``: the labelled synthetic scene generator;
- ``ops``: running TorchServe, archives, deployment config;
- ``training``: the trainer, the default model's recipes, seed import, the learning curve;
- ``bench``: benchmarks and quality checks.

Importing the package imports nothing heavy: ``import lizaalert_tagger.client.http`` stays light.
"""

__version__ = "1.1.0"
