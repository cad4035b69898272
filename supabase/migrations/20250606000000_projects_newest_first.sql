-- project list (GET /agents/training/projects, `training-agent project list`): newest first, paged
CREATE INDEX IF NOT EXISTS projects_created_idx ON public.projects (created_at DESC, id DESC);
