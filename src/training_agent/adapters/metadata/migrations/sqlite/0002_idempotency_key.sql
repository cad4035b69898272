-- A start's Idempotency-Key and the digest of its request: the same key returns the same job.
ALTER TABLE training_jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE training_jobs ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS training_jobs_idempotency_key ON training_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL
