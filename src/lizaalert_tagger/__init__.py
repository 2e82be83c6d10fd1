"""LizaAlert photo tagger: 11 attributes of search-and-rescue photos, served by TorchServe.

Modules, by concern (the import rules between them are in ``.importlinter``):

- core, free of any server: ``spec`` (the attribute table), ``model``, ``preprocess``,
  ``decode``, ``quantize`` (int8) and ``service`` (settings, payloads, batches);
- evaluation: ``labels_csv`` (the seed's CSV), ``scoring``;
- the HTTP client, without torch: ``client`` and its CLI ``tagctl``;
- running TorchServe here: ``runtime``, ``serve``, ``archive``;
- training: ``train``, ``learning_curve``, ``default_model``, ``seed_import`` and the
  scene generator ``scenes``;
- measuring: ``bench``, ``parity``, ``soak``.

Importing the package imports nothing heavy: ``import lizaalert_tagger.client`` stays light.
"""

__version__ = "1.1.0"
