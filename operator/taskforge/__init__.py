"""Taskforge: a Kubernetes-native workflow engine."""

__version__ = "0.1.0"
"""The distribution's version (pyproject reads it from here), so `taskforge --version` needs
no importlib.metadata (~50 ms of imports)."""

GROUP = "taskforge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
