"""Whose rights a run uses and what it reaches with them (engine/authority.py), and the
Forbidden start it leads to. Table tests on plain data."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from enginekit import cond, created, events, facts, step, workflow
from taskforge.api.steps import Step
from taskforge.engine.authority import (
    Authority,
    Identity,
    authority,
    denial_message,
    identity_from_annotation,
    identity_from_userinfo,
    references,
)
from taskforge.engine.facts import RunAuthorization
from taskforge.engine.planner import plan

ALICE = Identity("alice", uid="u1", groups=("devs", "system:authenticated"))
OPERATOR = "system:serviceaccount:taskforge:taskforge"
WRITER = Identity("bob", groups=("platform",))


def _step(name: str, **kw: Any) -> Step:
    return Step.model_validate({"name": name, **kw})


SECRET_ENV = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
CM_ENV = {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([_step("a", log={"message": "hi"})], []),
        ([_step("a", script={"source": "env", "env": [{"name": "X", "value": "1"}, SECRET_ENV]})],
         [("secrets", "db", "spec.steps[0].script.env[1].valueFrom.secretKeyRef")]),
        ([_step("a", container={"image": "busybox", "env": [CM_ENV]})],
         [("configmaps", "cfg", "spec.steps[0].container.env[0].valueFrom.configMapKeyRef")]),
        ([_step("a", http={"url": "http://x", "headers": [
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "t"}}},
            {"name": "X", "value": "plain"}]})],
         [("secrets", "tok", "spec.steps[0].http.headers[0].valueFrom.secretKeyRef")]),
        ([_step("a", slack={"webhookUrlFrom": {"name": "hook", "key": "url"}, "text": "x"})],
         [("secrets", "hook", "spec.steps[0].slack.webhookUrlFrom")]),
        ([_step("a", email={"host": "smtp", "from": "a@b.c", "to": ["d@e.f"], "subject": "s",
                            "body": "b", "usernameFrom": {"name": "smtp", "key": "u"},
                            "passwordFrom": {"name": "smtp", "key": "p"}})],
         [("secrets", "smtp", "spec.steps[0].email.usernameFrom"),
          ("secrets", "smtp", "spec.steps[0].email.passwordFrom")]),
    ],
)
def test_references_name_every_secret_and_configmap(
    steps: list[Step], expected: list[tuple[str, str, str]]
) -> None:
    refs = references(workflow(*steps))
    assert [(r.resource, r.name, r.field) for r in refs] == expected


def test_finally_steps_are_referenced_too() -> None:
    spec = workflow(step("a"), final=[_step("f", script={"source": "x", "env": [SECRET_ENV]})])
    assert [r.field for r in references(spec)] == [
        "spec.finally[0].script.env[0].valueFrom.secretKeyRef"]


@pytest.mark.parametrize(
    ("creator", "workflow_name", "writer", "who", "source"),
    [
        # A person's run acts for that person, whatever its trigger field says.
        (ALICE, "wf", WRITER, ALICE, "creator 'alice'"),
        (ALICE, None, None, ALICE, "creator 'alice'"),
        # The operator's own runs (cron, webhook) act for the Workflow's last writer.
        (Identity(OPERATOR), "wf", WRITER, WRITER, "'bob', last writer of workflow 'wf'"),
        (Identity(OPERATOR), "wf", None, None,
         "the last writer of workflow 'wf' is not recorded; apply the workflow again"),
        # Nothing recorded: nobody, so every reference is refused.
        (None, "wf", WRITER, None,
         "the run's creator is not recorded (is the taskforge admission webhook installed?)"),
    ],
)
def test_authority(
    creator: Identity | None, workflow_name: str | None, writer: Identity | None,
    who: Identity | None, source: str,
) -> None:
    assert authority(creator, OPERATOR, workflow_name, writer) == Authority(who, source)


def test_without_knowing_its_own_name_the_operator_trusts_no_run_as_its_own() -> None:
    assert authority(Identity(OPERATOR), None, "wf", WRITER).identity == Identity(OPERATOR)


@pytest.mark.parametrize(
    ("userinfo", "expected"),
    [
        (None, None),
        ({}, None),
        ({"username": ""}, None),
        ({"username": "alice"}, Identity("alice")),
        ({"username": "alice", "uid": "u1", "groups": ["devs", "system:authenticated"]}, ALICE),
        ({"username": "sa", "extra": {"b": ["2"], "a": ["1"]}},
         Identity("sa", extra=(("a", ("1",)), ("b", ("2",))))),
        ({"username": "many", "groups": [str(i) for i in range(100)]},
         Identity("many", groups=tuple(str(i) for i in range(64)))),
    ],
)
def test_identity_from_userinfo(userinfo: Any, expected: Identity | None) -> None:
    assert identity_from_userinfo(userinfo) == expected


@pytest.mark.parametrize(
    "identity", [ALICE, Identity("x"), Identity("sa", extra=(("k", ("v1", "v2")),))]
)
def test_annotation_round_trip(identity: Identity) -> None:
    assert identity_from_annotation(identity.to_annotation()) == identity


@pytest.mark.parametrize(
    "value", [None, "", "alice", "[1]", '{"user": "x"}', '{"username": ""}', "{" * 20000]
)
def test_malformed_annotations_are_nobody(value: str | None) -> None:
    assert identity_from_annotation(value) is None


def test_review_fields_carry_user_groups_uid_and_extra() -> None:
    identity = Identity("sa", uid="u", groups=("g",), extra=(("k", ("v",)),))
    assert identity.review_fields() == {"user": "sa", "uid": "u", "groups": ["g"],
                                        "extra": {"k": ["v"]}}


def test_denial_message_names_field_verb_and_person() -> None:
    refs = references(workflow(_step("s", script={"source": "x", "env": [SECRET_ENV]})))
    who = authority(ALICE, OPERATOR, None, None)
    assert denial_message(who, refs) == (
        "creator 'alice' may not get secrets/db (spec.steps[0].script.env[0].valueFrom"
        ".secretKeyRef)")
    nobody = authority(None, OPERATOR, None, None)
    assert denial_message(nobody, refs).startswith(
        "spec.steps[0].script.env[0].valueFrom.secretKeyRef names secret 'db', but the run's"
        " creator is not recorded")


SPEC = workflow(_step("s", script={"source": "cat", "env": [SECRET_ENV]}))


def test_a_refused_run_fails_forbidden_before_any_job() -> None:
    f = replace(facts(SPEC), authorization=RunAuthorization(denied="creator 'alice' may not x"))
    p = plan(f)
    assert p.status.phase == "Failed" and cond(p) == ("False", "Forbidden")
    assert p.status.message == "creator 'alice' may not x"
    assert created(p) == [] and events(p) == [("Forbidden", None)]


@pytest.mark.parametrize("authorization", [None, RunAuthorization(denied=None)])
def test_an_allowed_run_starts(authorization: RunAuthorization | None) -> None:
    p = plan(replace(facts(SPEC), authorization=authorization))
    assert p.status.phase == "Running" and created(p) == [("s", 1)]


@pytest.mark.parametrize(
    ("case", "expected"),
    [("inline", (SPEC, None)), ("ref", (SPEC, "wf")), ("missing", None), ("started", None)],
)
def test_spec_to_start_is_what_the_gates_check(case: str, expected: Any) -> None:
    """Authorization and limits look at the spec a run would pin, only before it starts."""
    f = facts(SPEC, inline=case == "inline")
    if case == "missing":
        f = replace(f, workflow=None)
    if case == "started":
        f = replace(f, status=plan(f).status)
    assert f.spec_to_start() == expected
