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
    Reference,
    authority,
    denial_message,
    identity_from_annotation,
    references,
)
from taskforge.engine.facts import RunAuthorization, RunFacts
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
        creator = identity_from_annotation(_annotation(body, CREATOR_ANNOTATION))
        writer = None
        if workflow_name is not None:
            workflow_body = self.store.workflows.get((key[0], workflow_name))
            writer = identity_from_annotation(_annotation(workflow_body, LAST_WRITER_ANNOTATION))
        who = authority(creator, await self._whoami(), workflow_name, writer)
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
