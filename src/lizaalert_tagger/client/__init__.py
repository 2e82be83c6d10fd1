"""The client side, without torch: ``http`` (TorchServe's APIs, tokens, retries), ``runner`` (the one bounded
submit/collect loop), ``run_folder`` (a field run's files), ``report`` (its HTML page), ``commands`` and
``tag_folder`` (what tagctl's commands do) and ``tagctl`` (the thin command line)."""
