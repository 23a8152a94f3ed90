"""kopf's admission webhook server, taking reviews as large as the API server sends them.

aiohttp refuses request bodies over 1 MiB (413) unless told otherwise, and kopf does not tell
it. The API server then refuses the create or update itself, with an opaque "failed calling
webhook ... 413", before the CRD's own rules could name the field that is too big: a 1.1 MB
run spec got that instead of "spec.workflowSpec.steps: ... at most 131072 characters". The
API server accepts objects up to 3 MiB in a request, and an UPDATE's review carries the
object twice (object and oldObject), so reviews up to MAX_REVIEW_BYTES are read.

It also says when it listens: /readyz waits for that. The operator's own HTTP server answers
/healthz before kopf has started the webhook site, and with `failurePolicy: Fail` a replica
that the Service (or a restarted local operator) sends reviews to before then refuses every
create ("connection refused" from the API server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp.web
import kopf

MAX_REVIEW_BYTES = 8 * 1024 * 1024

_listening = {"now": False}


def is_listening() -> bool:
    """Whether the webhook site is up (between kopf's start of the site and its cleanup)."""
    return _listening["now"]


class AdmissionServer(kopf.WebhookServer):
    """`kopf.WebhookServer` whose requests may be up to MAX_REVIEW_BYTES."""

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        try:
            async for client_config in super().__call__(fn):
                _listening["now"] = True  # kopf yields after `site.start()`
                yield client_config
        finally:
            _listening["now"] = False

    @staticmethod
    async def _serve(fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.Response:
        bigger = request.clone(client_max_size=MAX_REVIEW_BYTES)
        return await kopf.WebhookServer._serve(fn, bigger)
