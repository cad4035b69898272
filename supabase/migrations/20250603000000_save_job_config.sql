-- save_training_job also writes the job's config: an agent that claims a project with
-- claim_next_training_job (which copies the project's raw training_config) stores the resolved,
-- validated config on the job before it runs. Everything else is as in 20250601000000_init.sql.
CREATE OR REPLACE FUNCTION public.save_training_job(p_job jsonb) RETURNS boolean
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    j training_jobs := jsonb_populate_record(NULL::training_jobs, p_job);
BEGIN
    UPDATE training_jobs t
       SET state = j.state, config = coalesce(j.config, t.config),
           progress = coalesce(j.progress, '{}'), error = j.error,
           worker_id = j.worker_id, heartbeat_at = j.heartbeat_at,
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
