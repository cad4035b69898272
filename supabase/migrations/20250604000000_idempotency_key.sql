-- A start's Idempotency-Key (POST /agents/training/start) and the digest of the request it came
-- with (project, config, force): the same key returns the same job, one key never makes two
-- jobs. claim_training_job inserts these columns with the rest of the job (jsonb_populate_record).
ALTER TABLE public.training_jobs ADD COLUMN IF NOT EXISTS idempotency_key text;
ALTER TABLE public.training_jobs ADD COLUMN IF NOT EXISTS request_hash text;
CREATE UNIQUE INDEX IF NOT EXISTS training_jobs_idempotency_key
    ON public.training_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

NOTIFY pgrst, 'reload schema';
