"""Step results up to 1 MiB end to end: kept whole, read by later steps, over 1 MiB refused.

The result travels from the executor through the pod log (the termination message holds
4 KiB), is stored by the operator in a ConfigMap owned by the run, and reaches the next
step's templates and `when`. A 900 KB value cannot be passed whole into a pod (a Linux env
var holds at most 128 KiB), so the consumer checks its length and three slices; the stored
copy is compared byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json

import pytest
from taskforge.cli.main import app
from typer.testing import CliRunner

from tests.e2e.operator.conftest import Kube
from tests.e2e.operator.stepkit import step_of

PATTERN = "''.join(chr(97 + (i * 7919) % 26) for i in range({n}))"

PRODUCER = """\
import json, os
big = {pattern}
with open(os.environ["TASKFORGE_RESULT"], "w") as f:
    json.dump({{"small": "ok", "big": big}}, f)
"""

CONSUMER = """\
import json, os, sys
n = {{{{ params.size }}}}
big = {pattern}
half = n // 2
got = {{
    "length": {{{{ steps.producer.outputs.big | length }}}},
    "head": "{{{{ steps.producer.outputs.big[:1000] }}}}",
    "middle": "{{{{ steps.producer.outputs.big[params.size // 2:params.size // 2 + 1000] }}}}",
    "tail": "{{{{ steps.producer.outputs.big[-1000:] }}}}",
    "small": "{{{{ steps.producer.outputs.small }}}}",
}}
want = {{"length": n, "head": big[:1000], "middle": big[half:half + 1000],
         "tail": big[-1000:], "small": "ok"}}
if got != want:
    sys.exit("mismatch: " + json.dumps({{k: got[k] == want[k] for k in want}}))
with open(os.environ["TASKFORGE_RESULT"], "w") as f:
    json.dump({{"intact": True}}, f)
"""


def _spec() -> dict[str, object]:
    pattern = PATTERN.format(n="int(os.environ['SIZE'])")
    return {
        "params": [{"name": "size", "type": "integer"}],
        "steps": [
            {"name": "producer", "script": {
                "language": "python",
                "env": [{"name": "SIZE", "value": "{{ params.size }}"}],
                "source": PRODUCER.format(pattern=pattern)}},
            {"name": "consumer", "dependsOn": ["producer"],
             "when": "size(steps.producer.outputs.big) == params.size",
             "script": {"language": "python",
                        "source": CONSUMER.format(pattern=PATTERN.format(n="n"))}},
        ],
    }


def _stored(kube: Kube, name: str) -> bytes:
    cm = kube.core.read_namespaced_config_map(name, kube.namespace)
    return gzip.decompress(base64.b64decode(cm.binary_data["result.json.gz"]))


@pytest.mark.parametrize("size", [3_000, 100_000, 900_000])
def test_results_up_to_1_mib_reach_later_steps_whole(kube: Kube, size: int) -> None:
    kube.workflow("results", _spec())
    name = kube.start_run("results", {"size": size})
    run = kube.wait_run(name, timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "consumer")["outputs"]["intact"] is True
    producer = step_of(run, "producer")
    big = "".join(chr(97 + (i * 7919) % 26) for i in range(size))
    whole = {"exitCode": 0, "stdout": "", "small": "ok", "big": big}
    # Status keeps the small keys and names the big one with its true size.
    assert producer["outputs"]["small"] == "ok"
    assert producer["outputs"]["_truncated"]["big"] == size + 2
    ref = producer["result"]
    data = _stored(kube, ref["configMap"])
    assert json.loads(data) == whole
    assert ref["size"] == len(data) and ref["sha256"] == hashlib.sha256(data).hexdigest()
    # The CLI shows it whole too, with the user's own kubeconfig.
    shown = CliRunner().invoke(app, ["--kubeconfig", str(kube.kubeconfig), "-n", kube.namespace,
                                     "get", name, "--results", "-o", "json"])
    assert shown.exit_code == 0, shown.output
    assert step_of(json.loads(shown.stdout), "producer")["outputs"] == whole


def test_a_result_over_1_mib_fails_the_step_saying_so(kube: Kube) -> None:
    kube.workflow("results", _spec())
    name = kube.start_run("results", {"size": 2 * 1024 * 1024})
    run = kube.wait_run(name, timeout=120)
    assert run["status"]["phase"] == "Failed"
    producer = step_of(run, "producer")
    assert producer["phase"] == "Failed" and producer["attempts"] == 1, producer
    assert "result too large" in producer["message"], producer["message"]
    assert "over the limit of 1,048,576 bytes (1 MiB)" in producer["message"]
    assert producer["outputs"]["_truncated"]["big"] == 2 * 1024 * 1024 + 2
    assert step_of(run, "consumer")["phase"] == "Skipped"
