"""`taskforge validate` offline: messages name file, line and field; exit code 1 on any error.

`validate` is how a manifest's mistakes are found before anything reaches a cluster, so each
finding must point at the place to fix. Runs the real typer app in-process (CliRunner), no
cluster. Expected line numbers are found by searching the fixture text for a marker, so
editing a manifest does not silently shift what a test checks. The other offline piece of
the CLI, the parsing of `-p key=value` values: test_cli_params.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from taskforge.cli.main import app
from taskforge.cli.validate import check_text, parse_path, path_text
from typer.testing import CliRunner

from tests.unit.cli_kit import line, run_validate, write

HAS_ENGINE_VALIDATION = True
try:
    import taskforge.engine.validation  # noqa: F401
except ImportError:  # pragma: no cover
    HAS_ENGINE_VALIDATION = False

VALID = """\
apiVersion: taskforge.io/v1alpha1
kind: Workflow
metadata:
  name: demo
spec:
  params:
    - name: who
      type: string
      required: true
  steps:
    - name: fetch
      http:
        url: https://example.com/items
    - name: parse
      dependsOn: [fetch]
      log:
        message: "{{ steps.fetch.outputs.body.id }} for {{ params.who }}"
  finally:
    - name: cleanup
      log:
        message: 2024-01-02
---
apiVersion: taskforge.io/v1alpha1
kind: WorkflowRun
metadata:
  generateName: demo-
spec:
  workflowRef:
    name: demo
  params:
    who: me
"""


def test_valid_file_exits_0_and_names_the_documents(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", VALID)
    code, out = run_validate(path)
    assert code == 0, out
    assert f"{path}: valid (Workflow demo, WorkflowRun demo-)" in out


def test_unknown_dependency_names_file_line_and_field(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {name: x}
    spec:
      steps:
        - name: a
          log: {message: hi}
        - name: b
          dependsOn:
            - a
            - nope
          log: {message: hi}
    """
    path = write(tmp_path, "x.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    want = f"{path}:{line(text, '- nope')}: spec.steps[1].dependsOn[1]:"
    assert want in out, out
    assert "'nope'" in out
    assert out.strip().endswith("1 error")


def test_every_schema_error_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata:
      name: x
    spec:
      steps:
        - name: Bad_Name
          log: {message: hi}
        - name: b
          bogus: 1
          retry:
            limit: 3
            backoff:
              delay: soon
          script:
            language: sh
        - name: c
    """
    path = write(tmp_path, "s.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    lines = out.splitlines()
    expected = [
        (line(text, "Bad_Name"), "spec.steps[0].name:", "pattern"),
        (line(text, "bogus"), "spec.steps[1].bogus:", "unknown field"),
        (line(text, "delay: soon"), "spec.steps[1].retry.backoff.delay:", "pattern"),
        # `source` is missing: reported at its parent, the `script:` key
        (line(text, "script:"), "spec.steps[1].script.source:", "required field is missing"),
        (line(text, "- name: c"), "spec.steps[2]:", "exactly one of"),
    ]
    for number, field, words in expected:
        hit = [ln for ln in lines if ln.startswith(f"{path}:{number}: {field}")]
        assert hit and words in hit[0], (number, field, out)
    assert lines[-1] == "5 errors"
    numbers = [int(ln.split(":")[1]) for ln in lines[:-1]]
    assert numbers == sorted(numbers), "findings of a file are in line order"


def test_cycle_points_at_the_dependsOn_of_its_first_step(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {name: loop}
    spec:
      steps:
        - name: start
          log: {message: go}
        - name: a
          dependsOn: [start, c]
          log: {message: a}
        - name: b
          dependsOn: [a]
          log: {message: b}
        - name: c
          dependsOn: [b]
          log: {message: c}
    """
    path = write(tmp_path, "loop.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    assert f"{path}:{line(text, '[start, c]')}: spec.steps[1].dependsOn: dependency cycle:" in out
    assert "a -> c -> b -> a" in out


def test_duplicate_step_name_across_steps_and_finally(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {name: dup}
    spec:
      steps:
        - name: a
          log: {message: a}
      finally:
        - name: a
          log: {message: again}
    """
    path = write(tmp_path, "dup.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    assert f"{path}:{line(text, '- name: a', 2)}: spec.finally[0].name:" in out
    assert "used twice" in out


def test_lines_count_from_the_start_of_the_file_in_later_documents(tmp_path: Path) -> None:
    text = VALID + """\
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
data: {anything: goes}
---
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: not-ours}
spec: {entrypoint: main}
---
apiVersion: taskforge.io/v1alpha1
kind: WorkflowRun
metadata:
  name: second
spec:
  workflowSpec:
    steps:
      - name: x
        log: {message: hi}
        unexpected: true
---
apiVersion: taskforge.io/v1alpha1
kind: WorkflowRun
metadata: {name: third}
spec:
  params: {a: 1}
"""
    path = write(tmp_path, "multi.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    assert f"{path}:{line(text, 'unexpected: true')}: spec.workflowSpec.steps[0].unexpected:" in out
    assert f"{path}:{line(text, 'spec:', 5)}: spec: set exactly one of workflowRef and" in out
    assert out.strip().endswith("2 errors"), "ConfigMap and Argo's Workflow are skipped"


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {name: x}
    spec:
      steps: [ {name: a, log: {message: hi}
    other: 1
    """
    path = write(tmp_path, "broken.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{path}:") and "invalid YAML" in first
    assert int(first.split(":")[1]) >= line(text, "steps: [")


def test_missing_file_and_metadata_name(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {labels: {a: b}}
    spec:
      steps: [{name: a, log: {message: hi}}]
    """
    path = write(tmp_path, "noname.yaml", text)
    code, out = run_validate(path, tmp_path / "missing.yaml")
    assert code == 1
    assert f"{path}:{line(text, 'metadata:')}: metadata: metadata.name is required" in out
    assert f"{tmp_path / 'missing.yaml'}: cannot read:" in out


def test_run_params_are_checked_against_a_workflow_in_another_file(tmp_path: Path) -> None:
    wf = write(tmp_path, "wf.yaml", VALID.split("---", maxsplit=1)[0])
    run_text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: WorkflowRun
    metadata: {generateName: demo-}
    spec:
      workflowRef: {name: demo}
      params:
        who: 3
    """
    run = write(tmp_path, "run.yaml", run_text)
    code, out = run_validate(run, wf)
    assert code == 1
    assert f"{run}:{line(run_text, 'who: 3')}: spec.params.who: expects string" in out
    assert f"{wf}: valid (Workflow demo)" in out


def test_directory_list_kind_and_stdin(tmp_path: Path) -> None:
    sub = tmp_path / "manifests"
    sub.mkdir()
    write(sub, "a.yaml", VALID)
    write(sub, "notes.txt", "not yaml: [")
    as_list = """\
    apiVersion: v1
    kind: List
    items:
      - apiVersion: taskforge.io/v1alpha1
        kind: Workflow
        metadata: {name: l}
        spec:
          steps: [{name: a, lag: {message: hi}}]
    """
    code, out = run_validate(sub, "-", stdin=textwrap.dedent(as_list))
    assert code == 1
    assert f"{sub / 'a.yaml'}: valid" in out
    assert "notes.txt" not in out
    assert f"-:{line(as_list, 'lag:')}: items[0].spec.steps[0].lag: unknown field" in out


@pytest.mark.skipif(not HAS_ENGINE_VALIDATION, reason="taskforge.engine.validation missing")
def test_engine_checks_when_templates_and_defaults(tmp_path: Path) -> None:
    text = """\
    apiVersion: taskforge.io/v1alpha1
    kind: Workflow
    metadata: {name: e}
    spec:
      params:
        - name: count
          type: integer
          default: many
      steps:
        - name: a
          when: "params.count >"
          log:
            message: "{{ params.count "
    """
    path = write(tmp_path, "engine.yaml", text)
    code, out = run_validate(path)
    assert code == 1
    assert f"{path}:{line(text, 'default: many')}: spec.params[0].default:" in out
    assert f"{path}:{line(text, 'when:')}: spec.steps[0].when:" in out
    assert f"{path}:{line(text, 'message:')}: spec.steps[0].log.message: template syntax" in out


def test_no_arguments_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2


def test_paths_round_trip() -> None:
    loc = ("spec", "steps", 1, "dependsOn", 0)
    assert path_text(loc) == "spec.steps[1].dependsOn[0]"
    assert parse_path("spec.steps[1].dependsOn[0]") == loc
    assert check_text("", "empty.yaml").findings == []
