"""Templates: rendered recursively with the run's data, never touching secret references."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from taskforge.api.common import EnvVar, EnvVarSource, SecretKeyRef
from taskforge.api.steps import (
    ContainerStep,
    HttpHeader,
    HttpStep,
    LogStep,
    ScriptStep,
    SlackStep,
    Step,
)
from taskforge.engine.simplepaths import split
from taskforge.engine.templating import (
    _ENV,
    TemplateError,
    render_jinja,
    render_step_config,
    render_string,
)

_ENV_GLOBALS = dict(_ENV.globals)

CTX: dict[str, Any] = {
    "params": {"who": "world", "n": 3, "tags": ["a", "b"]},
    "steps": {"fetch": {"phase": "Succeeded", "outputs": {"body": {"id": 42}}, "exitCode": 0}},
    "run": {"name": "run1", "namespace": "ns", "uid": "u", "workflow": "wf"},
    "trigger": {"type": "webhook", "body": {"ref": "main"}, "scheduledTime": None,
                "deliveryId": "d1"},
}
SECRET = SecretKeyRef(name="tokens", key="{{ params.who }}")


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Step(name="l", log=LogStep(message="hello {{ params.who }}")),
         {"message": "hello world", "level": "info"}),
        (Step(name="l", log=LogStep(message="no templates here")),
         {"message": "no templates here", "level": "info"}),
        (Step(name="h", http=HttpStep(
            method="POST", url="https://x/{{ steps.fetch.outputs.body.id }}",
            headers=[HttpHeader(name="X-Run", value="{{ run.name }}"),
                     HttpHeader(name="Auth", value_from={"secret_key_ref": SECRET})],
            json_body={"ref": "{{ trigger.body.ref }}", "n": 1, "list": ["{{ params.n }}"]})),
         {"method": "POST", "url": "https://x/42",
          "headers": [{"name": "X-Run", "value": "run1"},
                      {"name": "Auth", "valueFrom": {"secretKeyRef": {
                          "name": "tokens", "key": "{{ params.who }}"}}}],
          "json": {"ref": "main", "n": 1, "list": ["3"]}, "timeout": "30s", "verifyTls": True}),
        (Step(name="s", script=ScriptStep(
            source="echo {{ params.tags | join(',') }}",
            env=[EnvVar(name="A", value="{{ trigger.deliveryId }}"),
                 EnvVar(name="B", value_from=EnvVarSource(secret_key_ref=SECRET))])),
         {"language": "sh", "source": "echo a,b",
          "env": [{"name": "A", "value": "d1"},
                  {"name": "B", "valueFrom": {"secretKeyRef": {
                      "name": "tokens", "key": "{{ params.who }}"}}}]}),
        (Step(name="c", container=ContainerStep(image="busybox",
                                                args=["{{ steps['fetch'].phase }}"])),
         {"image": "busybox", "args": ["Succeeded"]}),
        (Step(name="k", slack=SlackStep(webhook_url_from=SECRET, text="{{ params.n * 2 }}")),
         {"webhookUrlFrom": {"name": "tokens", "key": "{{ params.who }}"}, "text": "6"}),
        (Step(name="l", log=LogStep(message="{{ params.missing | default('dflt') }}")),
         {"message": "dflt", "level": "info"}),
        (Step(name="l", log=LogStep(message="{{ range(3) | join('-') }}")),
         {"message": "0-1-2", "level": "info"}),
    ],
    ids=["log", "plain", "http", "script", "container", "slack", "default filter", "globals"],
)
def test_render(step: Step, expected: dict[str, Any]) -> None:
    assert render_step_config(step, CTX) == expected


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (Step(name="post", http=HttpStep(url="{{ steps.fetch.outputs.x }}")),
         "step 'post': http.url: steps.fetch.outputs.x is absent: step 'fetch' (Succeeded)"
         " reported keys body"),
        (Step(name="post", http=HttpStep(url="u", json_body={"a": [1, "{{ params.nope }}"]})),
         "step 'post': http.json.a[1]: 'dict object' has no attribute 'nope'"),
        (Step(name="say", log=LogStep(message="{{ unclosed")),
         "step 'say': log.message: unexpected end of template"),
        (Step(name="say", log=LogStep(message="{{ run.__class__.__mro__ }}")),
         "step 'say': log.message:"),
        (Step(name="say", log=LogStep(message="{{ 1 / 0 }}")),
         "step 'say': log.message: division by zero"),
        (Step(name="say", script=ScriptStep(source="x", env=[EnvVar(name="A", value="{{ a }}")])),
         "step 'say': script.env[0].value: 'a' is undefined"),
    ],
    ids=["missing output", "nested path", "syntax", "sandbox", "runtime error", "env value"],
)
def test_errors_name_step_and_field(step: Step, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render_step_config(step, CTX)
    assert str(err.value).startswith(message), str(err.value)


# -- the fast path for plain variable paths must agree with Jinja exactly ----------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "items", "_x", "1"]), inner, max_size=3),
    max_leaves=8,
)
PART = st.sampled_from([".a", ".b", ".items", "._x", "['a']", '["b"]', "[0]", "[-1]", "[1]",
                        "['1']", ".get"])


@settings(max_examples=400, deadline=None)
@given(data=JSON, parts=st.lists(PART, max_size=4), text=st.sampled_from(["", "x ", " }} "]))
def test_fast_path_agrees_with_jinja(data: Any, parts: list[str], text: str) -> None:
    source = f"{text}{{{{ v{''.join(parts)} }}}}{text}"
    context = {**_ENV_GLOBALS, "v": data}
    try:
        expected: str | None = render_jinja(source, context)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(Exception):  # noqa: B017
            render_string(source, context)
    else:
        assert render_string(source, context) == expected


@pytest.mark.parametrize(
    ("source", "fast"),
    [
        ("{{ steps['a-b'].outputs.body.id }}", True),
        ("x {{ params.n }} y {{ run.name }}", True),
        ("{{ params.n | string }}", False),
        ("{{ params.n + 1 }}", False),
        ("{% if x %}y{% endif %}", False),
        ("{{ f() }}", False),
    ],
)
def test_which_strings_take_the_fast_path(source: str, fast: bool) -> None:
    assert (split(source) is not None) is fast


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('n="${#greeting}"; echo {{ params.x }}', 'n="${#greeting}"; echo 1'),
        ("echo ${#arr[@]} {## a comment ##}done", "echo ${#arr[@]} done"),
        ("{# not a comment #}", "{# not a comment #}"),
    ],
    ids=["shell length", "new comment syntax", "old comment syntax is text"],
)
def test_shell_hash_braces_are_not_jinja_comments(source: str, expected: str) -> None:
    assert render_string(source, {"params": {"x": 1}}) == expected
