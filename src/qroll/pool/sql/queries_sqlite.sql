-- Named queries of the task pool, SQLite dialect. Same names as queries_postgresql.sql (a unit
-- test checks). Values are always bound (:name); {where} is replaced by a filter built from
-- fragment_* below, which hold placeholders only, never values.

-- name: fragment_param
:{name}

-- name: fragment_json_path
json_extract(def, {param})

-- name: fragment_json_value
json_extract({param}, '$')

-- name: meta_create
CREATE TABLE IF NOT EXISTS qroll_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- name: meta_version
SELECT value FROM qroll_meta WHERE key = 'schema_version';

-- name: meta_set_version
INSERT INTO qroll_meta (key, value) VALUES ('schema_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: insert
INSERT INTO qroll_tasks (pool, task_hash, def, status, priority, max_attempts, created, updated)
VALUES (:pool, :task_hash, :def, 'waiting', :priority, :max_attempts, :now, :now)
ON CONFLICT (pool, task_hash) DO NOTHING
RETURNING id;

-- name: find_by_hash
SELECT id, status FROM qroll_tasks WHERE pool = :pool AND task_hash = :task_hash;

-- name: retry_failed
UPDATE qroll_tasks
SET status = 'waiting', attempts = 0, lease_owner = NULL, lease_expires = NULL, claimed_from = NULL,
    updated = :now
WHERE id = :id AND status = 'failed';

-- name: requeue_expired
UPDATE qroll_tasks
SET status = CASE WHEN attempts + 1 >= max_attempts THEN 'failed'
                  ELSE COALESCE(claimed_from, 'waiting') END,
    attempts = attempts + 1,
    last_error = 'the lease of ' || lease_owner || ' expired at ' || lease_expires
                 || ': its worker stopped renewing it (killed, out of memory or cut off)',
    lease_owner = NULL, lease_expires = NULL, updated = :now
WHERE pool = :pool AND status = 'running' AND lease_expires < :expired_before;

-- name: claim
UPDATE qroll_tasks
SET status = 'running', claimed_from = status, lease_owner = :owner, lease_expires = :lease_until,
    updated = :now
WHERE id = (SELECT id FROM qroll_tasks WHERE pool = :pool AND status = :status {where}
            ORDER BY priority DESC, id LIMIT 1)
RETURNING *;

-- name: heartbeat
UPDATE qroll_tasks SET lease_expires = :lease_until, updated = :now
WHERE id = :id AND pool = :pool AND status = 'running' AND lease_owner = :owner
RETURNING id;

-- name: finish
UPDATE qroll_tasks
SET status = CASE WHEN :count_attempt = 1 AND attempts + 1 >= max_attempts THEN 'failed'
                  ELSE :status END,
    attempts = attempts + :count_attempt,
    result = CASE WHEN :set_result = 1 THEN :result ELSE result END,
    last_error = CASE WHEN :count_attempt = 1 THEN :error ELSE last_error END,
    last_traceback = CASE WHEN :count_attempt = 1 THEN :traceback ELSE last_traceback END,
    lease_owner = NULL, lease_expires = NULL, updated = :now
WHERE id = :id AND pool = :pool AND status = 'running' AND lease_owner = :owner
RETURNING id, status;

-- name: held_by
-- After a lost connection: the task a claim by this lease token took, if its commit landed.
SELECT * FROM qroll_tasks WHERE pool = :pool AND status = 'running' AND lease_owner = :owner;

-- name: finished
-- After a lost connection: whether a finish with these values landed (see queries_postgresql.sql).
SELECT id, status FROM qroll_tasks
WHERE id = :id AND pool = :pool AND lease_owner IS NULL AND updated = :now
  AND (status = :status OR (:count_attempt = 1 AND status = 'failed'))
  AND (:set_result = 0 OR result = :result);

-- name: select
SELECT * FROM qroll_tasks WHERE pool = :pool {where} ORDER BY id;

-- name: stats
SELECT status, COUNT(*) AS n FROM qroll_tasks WHERE pool = :pool {where} GROUP BY status;

-- name: set_status
UPDATE qroll_tasks
SET attempts = CASE WHEN status = 'failed' AND :status <> 'failed' THEN 0 ELSE attempts END,
    status = :status, lease_owner = NULL, lease_expires = NULL, claimed_from = NULL, updated = :now
WHERE pool = :pool {where};

-- name: set_priority
UPDATE qroll_tasks SET priority = :priority, updated = :now WHERE pool = :pool {where};

-- name: delete
DELETE FROM qroll_tasks WHERE pool = :pool {where};

-- name: pools
SELECT DISTINCT pool FROM qroll_tasks ORDER BY pool;

-- name: analyze
ANALYZE qroll_tasks;
