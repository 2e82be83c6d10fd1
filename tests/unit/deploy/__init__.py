"""Deployment tests (Dockerfile, container configs, health check, nginx, Kubernetes, KServe).

A package, unlike tests/: without this file pytest would import
tests/unit/deploy/conftest.py under the bare name ``conftest``, in place of
tests/conftest.py, and every ``from conftest import ...`` in tests/ collected
after it would fail. As a package its modules are ``deploy.conftest``,
``deploy.test_k8s``, ... and tests/conftest.py stays ``conftest``.
"""
