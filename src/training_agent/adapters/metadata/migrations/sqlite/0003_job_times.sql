-- queued_at: when the start queued the job (created_at for jobs from before); started_at: when a
-- worker began it (unknown, so empty, for jobs from before).
ALTER TABLE training_jobs ADD COLUMN queued_at TEXT;
ALTER TABLE training_jobs ADD COLUMN started_at TEXT;
UPDATE training_jobs SET queued_at = created_at WHERE queued_at IS NULL
