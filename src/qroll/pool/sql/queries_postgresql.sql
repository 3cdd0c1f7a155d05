-- Named queries of the task pool, PostgreSQL dialect. Same names as queries_sqlite.sql (a unit
-- test checks). Values are always bound (%(name)s); {where} is replaced by a filter built from
-- fragment_* below, which hold placeholders only, never values.

-- name: fragment_param
%({name})s

-- name: fragment_json_path
(def #> {param}::text[])

-- name: fragment_json_value
{param}::jsonb

-- name: meta_create
CREATE TABLE IF NOT EXISTS qroll_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- name: meta_version
SELECT value FROM qroll_meta WHERE key = 'schema_version';

-- name: meta_set_version
INSERT INTO qroll_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: insert
INSERT INTO qroll_tasks (pool, task_hash, def, status, priority, max_attempts, created, updated)
VALUES (%(pool)s, %(task_hash)s, %(def)s::jsonb, 'waiting', %(priority)s, %(max_attempts)s,
        %(now)s, %(now)s)
ON CONFLICT (pool, task_hash) DO NOTHING
RETURNING id;

-- name: find_by_hash
SELECT id, status FROM qroll_tasks WHERE pool = %(pool)s AND task_hash = %(task_hash)s;

-- name: retry_failed
UPDATE qroll_tasks
SET status = 'waiting', attempts = 0, lease_owner = NULL, lease_expires = NULL, claimed_from = NULL,
    updated = %(now)s
WHERE id = %(id)s AND status = 'failed';

-- name: requeue_expired
UPDATE qroll_tasks AS t
SET status = CASE WHEN t.attempts + 1 >= t.max_attempts THEN 'failed'
                  ELSE COALESCE(t.claimed_from, 'waiting') END,
    attempts = t.attempts + 1,
    last_error = 'the lease of ' || t.lease_owner || ' expired at ' || t.lease_expires::text
                 || ': its worker stopped renewing it (killed, out of memory or cut off)',
    lease_owner = NULL, lease_expires = NULL, updated = %(now)s
WHERE t.id IN (SELECT id FROM qroll_tasks
               WHERE pool = %(pool)s AND status = 'running' AND lease_expires < %(expired_before)s
               FOR UPDATE SKIP LOCKED);

-- name: claim
-- One statement, so atomic in autocommit mode. {claim_from} is empty, or (async_claims=1 in the
-- URL) a one-row subquery that sets synchronous_commit off for this transaction only: the claim
-- then does not wait for its WAL flush (see postgres.py for why losing a claim is safe).
WITH picked AS (
    SELECT id FROM qroll_tasks WHERE pool = %(pool)s AND status = %(status)s::text {where}
    ORDER BY priority DESC, id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE qroll_tasks AS t
SET status = 'running', claimed_from = t.status, lease_owner = %(owner)s,
    lease_expires = %(lease_until)s, updated = %(now)s
FROM picked{claim_from} WHERE t.id = picked.id
RETURNING t.*;

-- name: heartbeat
UPDATE qroll_tasks SET lease_expires = %(lease_until)s, updated = %(now)s
WHERE id = %(id)s AND pool = %(pool)s AND status = 'running' AND lease_owner = %(owner)s
RETURNING id;

-- name: finish
UPDATE qroll_tasks
SET status = CASE WHEN %(count_attempt)s::int = 1 AND attempts + 1 >= max_attempts THEN 'failed'
                  ELSE %(status)s::text END,
    attempts = attempts + %(count_attempt)s::int,
    result = CASE WHEN %(set_result)s::int = 1 THEN %(result)s::jsonb ELSE result END,
    last_error = CASE WHEN %(count_attempt)s::int = 1 THEN %(error)s::text ELSE last_error END,
    last_traceback = CASE WHEN %(count_attempt)s::int = 1 THEN %(traceback)s::text
                          ELSE last_traceback END,
    lease_owner = NULL, lease_expires = NULL, updated = %(now)s
WHERE id = %(id)s AND pool = %(pool)s AND status = 'running' AND lease_owner = %(owner)s
RETURNING id, status;

-- name: finish_and_claim
-- A result and the next claim as one statement: one round trip, one durable commit. PostgreSQL
-- only (SQLite has no UPDATE in a WITH; backend.py runs finish then claim in one transaction
-- there). The claim happens only if the finish matched the lease (EXISTS over done). One row:
-- finished (0 when the lease was lost) and the claimed task's columns (all NULL if none).
WITH done AS (
    UPDATE qroll_tasks
    SET status = %(status)s::text, result = %(result)s::jsonb, lease_owner = NULL,
        lease_expires = NULL, updated = %(now)s
    WHERE id = %(id)s AND pool = %(pool)s AND status = 'running' AND lease_owner = %(owner)s
    RETURNING id
), picked AS (
    SELECT id FROM qroll_tasks
    WHERE pool = %(pool)s AND status = %(next_status)s::text {where} AND EXISTS (SELECT 1 FROM done)
    ORDER BY priority DESC, id LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE qroll_tasks AS t
    SET status = 'running', claimed_from = t.status, lease_owner = %(next_owner)s,
        lease_expires = %(lease_until)s, updated = %(now)s
    FROM picked WHERE t.id = picked.id
    RETURNING t.*
)
SELECT (SELECT COUNT(*) FROM done) AS finished, claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON true;

-- name: held_by
-- After a lost connection: the task a claim by this lease token took, if its commit landed.
SELECT * FROM qroll_tasks WHERE pool = %(pool)s AND status = 'running' AND lease_owner = %(owner)s;

-- name: finished
-- After a lost connection: whether a finish with these values landed. The row no longer names
-- its lease, so it is recognised by what the finish wrote: its exact time, status and result.
SELECT id, status FROM qroll_tasks
WHERE id = %(id)s AND pool = %(pool)s AND lease_owner IS NULL AND updated = %(now)s
  AND (status = %(status)s::text OR (%(count_attempt)s::int = 1 AND status = 'failed'))
  AND (%(set_result)s::int = 0 OR result = %(result)s::jsonb);

-- name: select
SELECT * FROM qroll_tasks WHERE pool = %(pool)s {where} ORDER BY id;

-- name: stats
SELECT status, COUNT(*) AS n FROM qroll_tasks WHERE pool = %(pool)s {where} GROUP BY status;

-- name: set_status
UPDATE qroll_tasks
SET attempts = CASE WHEN status = 'failed' AND %(status)s::text <> 'failed' THEN 0 ELSE attempts END,
    status = %(status)s::text, lease_owner = NULL, lease_expires = NULL, claimed_from = NULL,
    updated = %(now)s
WHERE pool = %(pool)s {where};

-- name: set_priority
UPDATE qroll_tasks SET priority = %(priority)s, updated = %(now)s WHERE pool = %(pool)s {where};

-- name: delete
DELETE FROM qroll_tasks WHERE pool = %(pool)s {where};

-- name: pools
SELECT DISTINCT pool FROM qroll_tasks ORDER BY pool;

-- name: analyze
ANALYZE qroll_tasks;
