-- training-agent schema for Postgres and Supabase. The Supabase CLI applies this file
-- (`supabase db push`); `training-agent db migrate` applies the same file to DATABASE_URL.
-- Every statement is idempotent, so applying it by both routes is harmless.

CREATE TABLE IF NOT EXISTS public.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    status text NOT NULL DEFAULT 'pending_training',
    task_type text NOT NULL DEFAULT 'image_classification',
    training_config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_status_idx ON public.projects (status, created_at);

CREATE TABLE IF NOT EXISTS public.datasets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
    gcs_url text NOT NULL,
    name text,
    num_classes integer,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS datasets_project_idx ON public.datasets (project_id, created_at);

CREATE TABLE IF NOT EXISTS public.models (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    framework text NOT NULL DEFAULT 'pytorch',
    gcs_url text NOT NULL,
    accuracy double precision,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS models_project_idx ON public.models (project_id, created_at);

CREATE TABLE IF NOT EXISTS public.agent_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id uuid,
    agent text NOT NULL DEFAULT 'training',
    level text NOT NULL,
    message text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_logs_project_idx ON public.agent_logs (project_id, id);

CREATE TABLE IF NOT EXISTS public.training_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
    state text NOT NULL,
    config jsonb NOT NULL DEFAULT '{}',
    progress jsonb NOT NULL DEFAULT '{}',
    error text,
    worker_id text,
    heartbeat_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- At most one active job per project, enforced by the store itself.
CREATE UNIQUE INDEX IF NOT EXISTS training_jobs_one_active ON public.training_jobs (project_id)
    WHERE state IN ('queued', 'downloading', 'preparing', 'training', 'uploading', 'recording');
CREATE INDEX IF NOT EXISTS training_jobs_project_idx ON public.training_jobs (project_id, created_at);

-- The atomic operations live here, once, so the Postgres adapter (SQL) and the Supabase adapter
-- (PostgREST RPC) share them. Errors use PostgREST's PTnnn codes, which it turns into that HTTP
-- status: PT404 not found, PT409 conflict.

-- Writes a job's mutable fields only while the stored job is active. True when written, false
-- when the stored job is final; PT404 when there is no such job.
CREATE OR REPLACE FUNCTION public.save_training_job(p_job jsonb) RETURNS boolean
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    j training_jobs := jsonb_populate_record(NULL::training_jobs, p_job);
BEGIN
    UPDATE training_jobs t
       SET state = j.state, progress = coalesce(j.progress, '{}'), error = j.error,
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

-- Inserts the job and sets the project `training`, refusing (PT409) when the project already
-- has an active job or, when p_allowed is not null, a status outside it. Calling it again with
-- a job that is already the project's active job returns that job (a retried request).
CREATE OR REPLACE FUNCTION public.claim_training_job(p_job jsonb, p_allowed text[] DEFAULT NULL)
RETURNS SETOF public.training_jobs
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    j training_jobs := jsonb_populate_record(NULL::training_jobs, p_job);
    v_status text;
    v_active uuid;
BEGIN
    -- the project row lock serialises claims of one project
    SELECT status INTO v_status FROM projects WHERE id = j.project_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE SQLSTATE 'PT404' USING MESSAGE = format('project %s not found', j.project_id);
    END IF;
    SELECT id INTO v_active FROM training_jobs
     WHERE project_id = j.project_id
       AND state IN ('queued', 'downloading', 'preparing', 'training', 'uploading', 'recording');
    IF v_active = j.id THEN
        RETURN QUERY SELECT * FROM training_jobs WHERE id = j.id;
        RETURN;
    ELSIF v_active IS NOT NULL THEN
        RAISE SQLSTATE 'PT409' USING MESSAGE =
            format('project %s already has an active job %s', j.project_id, v_active);
    END IF;
    IF p_allowed IS NOT NULL AND NOT v_status = ANY (p_allowed) THEN
        RAISE SQLSTATE 'PT409' USING MESSAGE = format('project %s is %s; a start needs '
            'pending_training, training_failed or training_cancelled (or force)',
            j.project_id, v_status);
    END IF;
    j.config := coalesce(j.config, '{}');
    j.progress := coalesce(j.progress, '{}');
    j.created_at := coalesce(j.created_at, now());
    j.updated_at := coalesce(j.updated_at, now());
    INSERT INTO training_jobs SELECT j.*;
    UPDATE projects SET status = 'training', updated_at = now() WHERE id = j.project_id;
    RETURN QUERY SELECT * FROM training_jobs WHERE id = j.id;
END $$;

-- Claims the oldest `pending_training` project with no active job for p_worker_id, creating
-- its queued job with id p_job_id; returns no row when there is none. Rows another claimer
-- holds are skipped, so concurrent workers never wait on, or claim, the same project.
CREATE OR REPLACE FUNCTION public.claim_next_training_job(p_worker_id text, p_job_id uuid)
RETURNS SETOF public.training_jobs
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    p projects;
BEGIN
    IF EXISTS (SELECT 1 FROM training_jobs WHERE id = p_job_id) THEN  -- a retried request
        RETURN QUERY SELECT * FROM training_jobs WHERE id = p_job_id;
        RETURN;
    END IF;
    SELECT * INTO p FROM projects pr
     WHERE pr.status = 'pending_training'
       AND NOT EXISTS (SELECT 1 FROM training_jobs t WHERE t.project_id = pr.id
             AND t.state IN ('queued', 'downloading', 'preparing', 'training', 'uploading',
                             'recording'))
     ORDER BY pr.created_at, pr.id
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO training_jobs (id, project_id, state, config, progress, worker_id)
    VALUES (p_job_id, p.id, 'queued', p.training_config, '{}', p_worker_id);
    UPDATE projects SET status = 'training', updated_at = now() WHERE id = p.id;
    RETURN QUERY SELECT * FROM training_jobs WHERE id = p_job_id;
END $$;

-- In one transaction: saves the (succeeded) job, inserts the models row and sets the project
-- `pending_evaluation`. PT409, writing nothing, when the job is no longer active. Calling it
-- again after it succeeded (a retried request) changes nothing.
CREATE OR REPLACE FUNCTION public.record_trained_model(p_model jsonb, p_job jsonb)
RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    m models := jsonb_populate_record(NULL::models, p_model);
BEGIN
    IF EXISTS (SELECT 1 FROM models WHERE id = m.id) THEN
        RETURN;
    END IF;
    IF NOT save_training_job(p_job) THEN
        RAISE SQLSTATE 'PT409' USING MESSAGE =
            format('job %s is no longer active; model not recorded', p_job ->> 'id');
    END IF;
    m.framework := coalesce(m.framework, 'pytorch');
    m.metadata := coalesce(m.metadata, '{}');
    m.created_at := coalesce(m.created_at, now());
    INSERT INTO models SELECT m.*;
    UPDATE projects SET status = 'pending_evaluation', updated_at = now()
     WHERE id = (p_job ->> 'project_id')::uuid;
END $$;

-- On Supabase the tables sit in the schema PostgREST exposes, and EXECUTE is granted to
-- everyone by default: row-level security without policies, and grants to the service role
-- only, keep the anon key out. On plain Postgres (no `anon` role) this block does nothing.
DO $$
DECLARE
    t text;
    fn text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['projects', 'datasets', 'models', 'agent_logs', 'training_jobs'] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
    END LOOP;
    FOREACH fn IN ARRAY ARRAY['save_training_job(jsonb)', 'claim_training_job(jsonb, text[])',
                              'claim_next_training_job(text, uuid)',
                              'record_trained_model(jsonb, jsonb)'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION public.%s FROM PUBLIC, anon, authenticated', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION public.%s TO service_role', fn);
    END LOOP;
END $$;

-- Tell a running PostgREST to reload its schema cache (nobody listens on plain Postgres).
NOTIFY pgrst, 'reload schema';
