"""The script and log steps end to end: shells, results, stdout, env from Secrets, levels."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.operator.stepkit import (
    assert_never_leaked,
    create_config_map,
    create_secret,
    secret_refs,
    step_log,
    step_of,
    unique,
)

# --- script ----------------------------------------------------------------------------------

# Real containers on the real node, host processes on the agent.
pytestmark = pytest.mark.both_nodes


def test_script_sh_bash_python_results_and_stdout_tail(kube: Kube) -> None:
    kube.workflow(
        "scripts",
        {
            "params": [{"name": "who", "default": "e2e"}],
            "steps": [
                {
                    "name": "sh",
                    "script": {
                        "language": "sh",
                        "env": [{"name": "GREETING", "value": "hi {{ params.who }}"}],
                        "source": 'echo "$GREETING from sh"\n'
                        'printf \'{"shell": "sh", "attempt": %d}\' "$TASKFORGE_ATTEMPT"'
                        ' > "$TASKFORGE_RESULT"\n',
                    },
                },
                {
                    "name": "bash",
                    "script": {
                        "language": "bash",
                        "source": "set -euo pipefail\n"
                        "words=(alpha beta gamma)\n"
                        'set -- "${words[@]}"\n'
                        'echo "bash: ${words[*]}"\n'
                        'echo "{\\"count\\": $#, \\"last\\": \\"${words[2]}\\"}"'
                        ' > "$TASKFORGE_RESULT"\n',
                    },
                },
                {
                    "name": "python",
                    "dependsOn": ["sh", "bash"],
                    "script": {
                        "language": "python",
                        "source": "import json, os, sys\n"
                        "for i in range(300):\n"
                        "    print(f'line {i:03d} ' + 'x' * 20)\n"
                        "print('to stderr', file=sys.stderr)\n"
                        "json.dump({'words': {{ steps.bash.outputs.count }},"
                        " 'shell': '{{ steps.sh.outputs.shell }}',"
                        " 'python': sys.version_info[:2]},"
                        " open(os.environ['TASKFORGE_RESULT'], 'w'))\n",
                    },
                },
            ],
        },
    )
    name = kube.start_run("scripts")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    sh, bash, python = (step_of(run, s)["outputs"] for s in ("sh", "bash", "python"))
    assert sh == {"exitCode": 0, "stdout": "hi e2e from sh\n", "shell": "sh", "attempt": 1}
    assert bash == {
        "exitCode": 0, "stdout": "bash: alpha beta gamma\n", "count": 3, "last": "gamma",
    }
    assert python["exitCode"] == 0
    assert python["words"] == 3 and python["shell"] == "sh" and python["python"] == [3, 11]
    # Only the tail of stdout (1 KiB), not stderr.
    tail = python["stdout"]
    assert tail.endswith("line 299 " + "x" * 20 + "\n")
    assert "line 000" not in tail and "to stderr" not in tail
    assert 900 < len(tail.encode()) <= 1024
    log = step_log(kube, name, "python")
    assert "line 000" in log and "to stderr" in log


def test_script_env_from_secret_and_config_map(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    password = unique("pw")
    create_secret(kube, "db", {"password": password})
    create_config_map(kube, "settings", {"region": "eu-west-1"})
    digest = hashlib.sha256(password.encode()).hexdigest()
    kube.workflow(
        "scriptenv",
        {
            "steps": [
                {
                    "name": "check",
                    "script": {
                        "language": "python",
                        "env": [
                            {"name": "LITERAL", "value": "lit"},
                            {
                                "name": "DB_PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                            },
                            {
                                "name": "REGION",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "settings", "key": "region"}
                                },
                            },
                        ],
                        "source": "import hashlib, json, os\n"
                        "pw = os.environ['DB_PASSWORD']\n"
                        "print('the password is', pw)\n"
                        "json.dump({'sha': hashlib.sha256(pw.encode()).hexdigest(),"
                        " 'region': os.environ['REGION'], 'literal': os.environ['LITERAL'],"
                        " 'echo': pw},"
                        " open(os.environ['TASKFORGE_RESULT'], 'w'))\n",
                    },
                }
            ]
        },
    )
    name = kube.start_run("scriptenv")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    outputs = step_of(run, "check")["outputs"]
    assert outputs["sha"] == digest  # the secret reached the script, unchanged
    assert outputs["region"] == "eu-west-1" and outputs["literal"] == "lit"
    assert outputs["echo"] == "[redacted]"
    assert outputs["stdout"] == "the password is [redacted]\n"
    [job] = kube.jobs(name)
    assert secret_refs(job) == {"DB_PASSWORD": ("db", "password")}
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["REGION"].value_from.config_map_key_ref.name == "settings"
    assert_never_leaked(kube, name, [password], running_operator)


# --- log -------------------------------------------------------------------------------------


def test_log_all_levels_rendered_from_params(kube: Kube) -> None:
    levels = ["debug", "info", "warning", "error"]
    kube.workflow(
        "levels",
        {
            "params": [
                {"name": "component", "default": "billing"},
                {"name": "percent", "type": "integer", "default": 85},
            ],
            "steps": [
                {
                    "name": level,
                    "log": {
                        "level": level,
                        "message": f"{{{{ params.component }}}} {level}:"
                        " disk {{ params.percent }}% full in {{ run.name }}",
                    },
                }
                for level in levels
            ]
            + [{"name": "default", "log": {"message": "{{ params.component | upper }}"}}],
        },
    )
    name = kube.start_run("levels", {"component": "payments", "percent": 91})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    for level in levels:
        message = f"payments {level}: disk 91% full in {name}"
        assert step_of(run, level)["outputs"] == {"message": message}
        assert f"{level.upper()} {message}\n" in step_log(kube, name, level)
    assert step_of(run, "default")["outputs"] == {"message": "PAYMENTS"}
    assert "INFO PAYMENTS\n" in step_log(kube, name, "default")
