-- project list: newest first, paged
CREATE INDEX IF NOT EXISTS projects_created_idx ON projects (created_at DESC, id DESC);
