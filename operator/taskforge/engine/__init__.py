"""The pure engine: decisions as functions from facts to actions (DESIGN.md, "Layers").

No Kubernetes client, Redis, metrics, I/O or clock here (import-linter enforces it); `now`
is always a parameter. The run planner is `planner.plan(RunFacts) -> Plan`; its parts are
`dag` (graph and order), `start` (pinning, params), `observe` (Job results, retries),
`status` (phase, conditions), `templating`/`simplepaths` and `conditions` (Jinja, CEL),
`retry`, `results`, `naming`, and `defer` (holding a launch back for a rate limit).
"""
