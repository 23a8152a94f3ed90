-- The run archive (issue 18). One row per finished run, per step attempt, per attempt log.
-- Attempts and logs are keyed by the run's uid and carry no foreign key: they are written
-- as each attempt ends, before the run's row (which is written when the run ends).

CREATE TABLE archived_runs (
    uid                 text PRIMARY KEY,
    namespace           text NOT NULL,
    name                text NOT NULL,
    workflow            text,
    workflow_generation bigint,
    phase               text NOT NULL,
    trigger             text NOT NULL DEFAULT 'manual',
    params              jsonb,
    outputs             jsonb,
    pinned_spec         jsonb,
    steps               jsonb,
    creator             text,
    message             text,
    created_at          timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    archived_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX archived_runs_by_namespace ON archived_runs (namespace, finished_at DESC NULLS LAST);
CREATE INDEX archived_runs_by_workflow ON archived_runs (namespace, workflow, finished_at DESC NULLS LAST);
CREATE INDEX archived_runs_by_name ON archived_runs (namespace, name, finished_at DESC NULLS LAST);
CREATE INDEX archived_runs_by_finish ON archived_runs (finished_at);

CREATE TABLE archived_attempts (
    run_uid     text NOT NULL,
    step        text NOT NULL,
    attempt     integer NOT NULL,
    job_name    text,
    started_at  timestamptz,
    finished_at timestamptz,
    exit_code   integer,
    reason      text,
    message     text,
    outputs     jsonb,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_uid, step, attempt)
);

CREATE TABLE archived_logs (
    run_uid     text NOT NULL,
    step        text NOT NULL,
    attempt     integer NOT NULL,
    pod         text,
    size        bigint NOT NULL,
    truncated   boolean NOT NULL DEFAULT false,
    note        text,
    content     bytea NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_uid, step, attempt)
);
