"""Server-neutral request handling (no TorchServe import): ``service`` is the one entry point (a server's
batch of requests in, one answer per request and the metrics out), over ``settings`` (model-config.yaml's
``handler:``), ``payload`` (the photos of a request, KServe ``instances`` included) and
``explain_options`` (an explanation's ``target`` and ``overlay``). The errors it answers with are ``common.errors``."""
