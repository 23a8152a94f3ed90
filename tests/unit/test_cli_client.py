"""The CLI's client pieces that need no cluster: selectors as lightkube sends them, the
one-line descriptions of lightkube's and httpx2's errors, and the checked read of a stored
result (adapters/resultpack.py). The requests themselves are tried against the real
apiserver in tests/e2e/test_cli_*.py."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, ConfigError
from lightkube.core.internal_models import meta_v1
from lightkube.core.selector import build_selector
from taskforge.adapters.resultpack import (
    ANNOTATION_PARTS,
    DATA_KEY,
    ResultReadError,
    read_result,
)
from taskforge.api.resultlog import digest
from taskforge.cli.client import fields, labels
from taskforge.cli.errors import CliError, describe


@pytest.mark.parametrize("selector", [
    "app=web", "env in (prod,staging),tier", "!canary", "a!=b,c==d", "x notin (1, 2)",
])
def test_label_selectors_go_out_as_typed(selector: str) -> None:
    """Pins lightkube's selector builder: an "exists" term is the bare key, which is how
    the CLI sends a whole kubectl selector verbatim. A lightkube release that changes it
    fails here, not in a person's `taskforge list -l`."""
    assert build_selector(labels(selector)) == selector


@pytest.mark.parametrize(("selector", "sent"), [
    ("spec.workflowRef.name=pipe", "spec.workflowRef.name=pipe"),
    ("metadata.name==a", "metadata.name=a"),
    ("status.phase!=Failed,status.phase!=Cancelled",
     "status.phase!=Failed,status.phase!=Cancelled"),
    (" a = b ", "a=b"),
])
def test_field_selectors(selector: str, sent: str) -> None:
    assert build_selector(fields(selector), for_fields=True) == sent


@pytest.mark.parametrize("selector", ["status.phase", "=x", "a=b,,c=d"])
def test_bad_field_selector_names_the_flag(selector: str) -> None:
    with pytest.raises(CliError, match=r"^--field-selector: "):
        fields(selector)


_REQUEST = httpx2.Request("GET", "https://127.0.0.1:1/apis/taskforge.io/v1alpha1/workflows")


@pytest.mark.parametrize(("error", "line"), [
    (ApiError(status=meta_v1.Status(code=403, reason="Forbidden", message="runs are forbidden")),
     "not allowed: runs are forbidden"),
    (ApiError(status=meta_v1.Status(code=401, reason="Unauthorized")),
     "not allowed: 401 Unauthorized"),
    (ApiError(status=meta_v1.Status(code=500, message="etcdserver: request timed out")),
     "Kubernetes API error: etcdserver: request timed out"),
    (httpx2.HTTPStatusError("x", request=_REQUEST, response=httpx2.Response(
        502, text="<html>\n bad gateway </html>", request=_REQUEST)),
     "Kubernetes API error: 502 <html> bad gateway </html>"),
    (httpx2.ConnectError("[Errno 111] Connection refused", request=_REQUEST),
     "cannot reach the Kubernetes API at https://127.0.0.1:1: Connection refused"),
    (httpx2.ReadTimeout("", request=_REQUEST),
     "cannot reach the Kubernetes API at https://127.0.0.1:1: ReadTimeout"),
    (ConfigError("Context 'x' not found"), "kubeconfig: Context 'x' not found"),
    (CliError("plain"), "plain"),
    (KeyError("a bug"), None),
])
def test_errors_are_described_in_one_line(error: BaseException, line: str | None) -> None:
    assert describe(error) == line


def _config_maps(data: bytes, parts: int = 1, **annotations: str) -> dict[str, Any]:
    packed = gzip.compress(data, mtime=0)
    size = -(-len(packed) // parts)
    maps = {}
    for index in range(parts):
        name = "res" if index == 0 else f"res-{index + 1}"
        maps[name] = {
            "metadata": {"annotations": {ANNOTATION_PARTS: str(parts), **annotations}},
            "binaryData": {DATA_KEY: base64.b64encode(
                packed[index * size:(index + 1) * size]).decode()},
        }
    return maps


RESULT = b'{"rows": [1, 2, 3]}'


@pytest.mark.parametrize(("maps", "sha", "error"), [
    (_config_maps(RESULT), digest(RESULT), None),
    (_config_maps(RESULT, parts=2), digest(RESULT), None),
    ({}, digest(RESULT), "configmap ns/res not found"),
    ({"res": _config_maps(RESULT, parts=2)["res"]}, digest(RESULT), "ns/res-2 not found"),
    (_config_maps(RESULT), digest(b"other"), "SHA-256 differs"),
    (_config_maps(RESULT, **{ANNOTATION_PARTS: "9"}), digest(RESULT), "bad part count '9'"),
    (_config_maps(RESULT, **{ANNOTATION_PARTS: "two"}), digest(RESULT), "bad part count"),
    ({"res": {"metadata": {}, "binaryData": {DATA_KEY: "not base64!"}}}, digest(RESULT),
     "unreadable"),
    ({"res": {"metadata": {}, "binaryData": {}}}, digest(RESULT), "unreadable"),
    ({"res": {"metadata": {}, "binaryData": {DATA_KEY: base64.b64encode(
        gzip.compress(b" " * (2 * 1024 * 1024))).decode()}}}, digest(b" " * (2 * 1024 * 1024)),
     "SHA-256 differs"),  # over 1 MiB unzipped: capped, never whole in memory
])
def test_stored_result_is_read_checked(maps: dict[str, Any], sha: str, error: str | None) -> None:
    """Every field of the ConfigMaps is hostile input (anyone who may edit ConfigMaps in
    the namespace may alter them)."""
    if error is None:
        assert read_result("ns", "res", sha, maps.get) == RESULT
    else:
        with pytest.raises(ResultReadError, match=error):
            read_result("ns", "res", sha, maps.get)
