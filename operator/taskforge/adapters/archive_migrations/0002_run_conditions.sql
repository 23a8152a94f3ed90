-- The run's conditions (status.conditions): the reason a run failed (StatusTooLarge,
-- InvalidSpec, StepFailed, ...) is there, not in the phase or the message alone.
ALTER TABLE archived_runs ADD COLUMN IF NOT EXISTS conditions jsonb;
