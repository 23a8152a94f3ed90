"""Before a run's first Job: may the person it acts for read what its steps name?

Facts for `engine.start` (`RunAuthorization`), gathered from the recorded creator, the
Workflow's last writer and SubjectAccessReviews. The rules are `engine/authority.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from taskforge.adapters import authz
from taskforge.engine.authority import (
    CREATOR_ANNOTATION,
    LAST_WRITER_ANNOTATION,
    Authority,
    Reference,
    authority,
    denial_message,
    identity_from_annotation,
    references,
)
from taskforge.engine.facts import RunAuthorization, RunFacts
from taskforge.engine.subflow import MAX_DEPTH
from taskforge.handlers import children, runlog
from taskforge.handlers.store import Key, Store

log = logging.getLogger("taskforge.authorization")


def _annotation(body: dict[str, Any] | None, name: str) -> str | None:
    value = ((body or {}).get("metadata") or {}).get("annotations", {}).get(name)
    return str(value) if value is not None else None


class RunAuthorizer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.operator_username: str | None = None
        """Runs created under this name came from our own triggers and act for the Workflow's
        last writer. Learned on first need (not at start-up, which must not wait for the API
        server); until it is known no run is authorized, or cron runs would act with the
        operator's own rights."""

    async def _whoami(self) -> str:
        if self.operator_username is None:
            name = await asyncio.to_thread(authz.whoami)
            if not name:
                raise RuntimeError("the API server did not say who the operator is")
            log.info("operator identity: %s", name)
            self.operator_username = name
        return self.operator_username

    async def _authority(self, key: Key, body: dict[str, Any], workflow_name: str | None,
                         depth: int = 0) -> Authority:
        """The creator; for the operator's own runs, the Workflow's last writer, except for
        the child run of a workflow step, which acts for its parent's authority (the person
        who could start the parent may not gain the called Workflow's author's rights).

        Only a run the operator created counts as a child: whoever else creates a run with
        an owner reference acts as themselves anyway. A parent that is gone denies."""
        creator = identity_from_annotation(_annotation(body, CREATOR_ANNOTATION))
        operator = await self._whoami()
        parent = children.parent_of(body)
        if parent is not None and creator is not None and creator.username == operator:
            parent_body = self.store.run((key[0], parent))
            owner = children.owner_uid(body)
            if (parent_body is None or depth > MAX_DEPTH
                    or (parent_body.get("metadata") or {}).get("uid") != owner):
                return Authority(None, f"the parent run {parent!r} of this child run is gone")
            inner = await self._authority((key[0], parent), parent_body,
                                          runlog.workflow_of(parent_body), depth + 1)
            return Authority(inner.identity, f"{inner.source} (through parent run {parent!r})")
        writer = None
        if workflow_name is not None:
            workflow_body = self.store.workflows.get((key[0], workflow_name))
            writer = identity_from_annotation(_annotation(workflow_body, LAST_WRITER_ANNOTATION))
        return authority(creator, operator, workflow_name, writer)

    async def check(self, key: Key, body: dict[str, Any], facts: RunFacts) -> (
        RunAuthorization | None
    ):
        """None when there is nothing to check (started already, no spec yet, no references)."""
        to_start = facts.spec_to_start()
        if to_start is None:
            return None
        spec, workflow_name = to_start
        refs = references(spec)
        if not refs:
            return None
        who = await self._authority(key, body, workflow_name)
        if who.identity is None:
            return RunAuthorization(denied=denial_message(who, refs))
        identity = who.identity
        unique: dict[tuple[str, str, str, str], Reference] = {}
        for ref in refs:
            unique.setdefault((ref.verb, ref.resource, ref.name, ref.subresource), ref)
        answers = await asyncio.gather(*(
            asyncio.to_thread(authz.allowed, identity, key[0], ref.verb, ref.resource, ref.name,
                              subresource=ref.subresource)
            for ref in unique.values()
        ))
        refused = [ref for ref, ok in zip(unique.values(), answers, strict=True) if not ok]
        return RunAuthorization(denied=denial_message(who, refused) if refused else None)
