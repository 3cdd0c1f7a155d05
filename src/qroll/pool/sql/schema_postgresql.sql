-- The task pool's schema, PostgreSQL dialect; version 1 (qroll.pool.backend.SCHEMA_VERSION).
CREATE TABLE IF NOT EXISTS qroll_tasks (
    id             BIGSERIAL   PRIMARY KEY,
    pool           TEXT        NOT NULL,
    task_hash      TEXT        NOT NULL,
    def            JSONB       NOT NULL,        -- the task definition
    status         TEXT        NOT NULL DEFAULT 'waiting'
                   CHECK (status IN ('waiting', 'running', 'part_done', 'done', 'failed')),
    priority       INTEGER     NOT NULL DEFAULT 0,
    attempts       INTEGER     NOT NULL DEFAULT 0,
    max_attempts   INTEGER     NOT NULL DEFAULT 3,
    lease_owner    TEXT,
    lease_expires  TIMESTAMPTZ,
    claimed_from   TEXT,
    created        TIMESTAMPTZ NOT NULL,
    updated        TIMESTAMPTZ NOT NULL,
    result         JSONB,
    last_error     TEXT,
    last_traceback TEXT,
    UNIQUE (pool, task_hash)
);
CREATE INDEX IF NOT EXISTS qroll_tasks_claim ON qroll_tasks (pool, status, priority DESC, id);
-- Only running tasks have a lease: a partial index stays small and is not written by other moves.
CREATE INDEX IF NOT EXISTS qroll_tasks_lease ON qroll_tasks (pool, lease_expires) WHERE status = 'running';
