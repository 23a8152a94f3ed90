"""Taskforge: a Kubernetes-native workflow engine."""

GROUP = "taskforge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
