-- training_jobs.queued_at (when the start queued the job; created_at for jobs from before) and
-- started_at (when a worker began it; empty for jobs from before, and while a job waits).
-- save_training_job writes started_at once a worker has set it; everything else is as in
-- 20250603000000_save_job_config.sql.
ALTER TABLE public.training_jobs ADD COLUMN IF NOT EXISTS queued_at timestamptz DEFAULT now();
ALTER TABLE public.training_jobs ADD COLUMN IF NOT EXISTS started_at timestamptz;
UPDATE public.training_jobs SET queued_at = created_at WHERE queued_at IS NULL;

CREATE OR REPLACE FUNCTION public.save_training_job(p_job jsonb) RETURNS boolean
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    j training_jobs := jsonb_populate_record(NULL::training_jobs, p_job);
BEGIN
    UPDATE training_jobs t
       SET state = j.state, config = coalesce(j.config, t.config),
           progress = coalesce(j.progress, '{}'), error = j.error,
           worker_id = j.worker_id, heartbeat_at = j.heartbeat_at,
           started_at = coalesce(j.started_at, t.started_at),
           updated_at = coalesce(j.updated_at, now()), finished_at = j.finished_at
     WHERE t.id = j.id
       AND t.state IN ('queued', 'downloading', 'preparing', 'training', 'uploading', 'recording');
    IF FOUND THEN
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM training_jobs WHERE id = j.id) THEN
        RETURN false;
    END IF;
    RAISE SQLSTATE 'PT404' USING MESSAGE = format('no training job for job %s', j.id);
END $$;

NOTIFY pgrst, 'reload schema';
