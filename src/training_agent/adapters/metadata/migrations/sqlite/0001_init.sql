-- training-agent schema for the embedded SQLite store (json columns hold JSON text).
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending_training',
    task_type TEXT NOT NULL DEFAULT 'image_classification',
    training_config TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_status_idx ON projects (status, created_at);

CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    gcs_url TEXT NOT NULL,
    name TEXT,
    num_classes INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_project_idx ON datasets (project_id, created_at);

CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    framework TEXT NOT NULL DEFAULT 'pytorch',
    gcs_url TEXT NOT NULL,
    accuracy REAL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS models_project_idx ON models (project_id, created_at);

CREATE TABLE IF NOT EXISTS agent_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT,
    agent TEXT NOT NULL DEFAULT 'training',
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_logs_project_idx ON agent_logs (project_id, id);

CREATE TABLE IF NOT EXISTS training_jobs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    worker_id TEXT,
    heartbeat_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
-- At most one active job per project, enforced by the store itself.
CREATE UNIQUE INDEX IF NOT EXISTS training_jobs_one_active ON training_jobs (project_id)
    WHERE state IN ('queued', 'downloading', 'preparing', 'training', 'uploading', 'recording');
CREATE INDEX IF NOT EXISTS training_jobs_project_idx ON training_jobs (project_id, created_at);
