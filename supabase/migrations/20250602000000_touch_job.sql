-- Heartbeat: sets heartbeat_at (and the owner, when given) while the job is active, touching
-- nothing else, so it never overwrites a concurrent progress save. True when written, false when
-- the job is final; PT404 when there is no such job.
CREATE OR REPLACE FUNCTION public.touch_training_job(p_job_id uuid, p_worker_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE training_jobs
       SET heartbeat_at = now(), updated_at = now(), worker_id = coalesce(p_worker_id, worker_id)
     WHERE id = p_job_id
       AND state IN ('queued', 'downloading', 'preparing', 'training', 'uploading', 'recording');
    IF FOUND THEN
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM training_jobs WHERE id = p_job_id) THEN
        RETURN false;
    END IF;
    RAISE SQLSTATE 'PT404' USING MESSAGE = format('no training job for job %s', p_job_id);
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON FUNCTION public.touch_training_job(uuid, text) FROM PUBLIC, anon, authenticated;
        GRANT EXECUTE ON FUNCTION public.touch_training_job(uuid, text) TO service_role;
    END IF;
END $$;

NOTIFY pgrst, 'reload schema';
