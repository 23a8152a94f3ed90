"""Taskforge's HTTP API and web UI server (issue 17): its own process, not the operator's.

`python -m taskforge.web` (entry point `taskforge-ui`) in the chart's own Deployment, or
`taskforge ui` on a laptop. Why a separate Deployment rather than routes on the operator's
aiohttp app (which serves /metrics, /healthz and /hooks):

* Isolation of identities. The operator's ServiceAccount is broad (it creates Jobs, reads
  Secrets for webhooks, patches every run's status). This server handles user bearer
  tokens and runs with a narrow ServiceAccount of its own: create TokenReviews and
  SubjectAccessReviews, read runs, workflows, pods, pod logs and Events. It writes nothing
  as itself: a run started, cancelled, retried or replayed here is written with the
  *caller's* token, so admission records the real user and RBAC is enforced twice.
  A bug in a page handler cannot borrow the operator's rights.
* Independent scaling and lifecycle. Viewers hold long-lived SSE streams and log follows;
  the UI scales by its own replica count (every replica serves, no leader election), and
  its rollout, memory or a crash never restarts the operator.
* A UI outage never touches reconciles: the operator's event loop serves no user traffic,
  so a burst of viewers or a slow log stream cannot delay a step hand-off.

Layers: `taskforge.web` sits beside `taskforge.handlers` (neither imports the other) above
the adapters; the CLI sits above it (`taskforge ui` starts this server, `taskforge dlq` is a
client of its API).
"""
