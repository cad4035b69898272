-- agent_logs.request_id: a client-chosen id per log row, unique, so that a retried insert whose
-- first attempt landed but whose answer was lost (the Supabase adapter retries over HTTP) is
-- refused as a duplicate (23505) and not written twice. Rows written without one keep NULL.
ALTER TABLE public.agent_logs ADD COLUMN IF NOT EXISTS request_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS agent_logs_request_id ON public.agent_logs (request_id);

NOTIFY pgrst, 'reload schema';
