-- The admission coordinator's one statement per batch (group commit): for every org in the
-- batch it releases the ended runs (and drops released ids from the queue), then admits in
-- arrival order as many runs as fit the concurrent, daily and monthly limits: first the org's
-- queued runs, then the batch's new ones. A new run that does not fit is queued when it asked to
-- wait (kind 'enqueue') and the queue has room; queued runs hold daily and monthly headroom,
-- so a run refused by the daily or monthly limit is never queued. Queued runs are admitted
-- only by a batch that releases a slot of their org or drains it ('drain': an instance that
-- found free slots beside a queue), so a new run never jumps the queue and a batch of new runs
-- alone changes an org's row only by admitting or queueing them. Day and month only roll
-- forward, so an instance with a lagging clock never resets a counter. A run id already active
-- or queued is not taken again (a retried batch cannot count twice); a released id that is
-- neither changes nothing. Each admitted id is marked with the batch id, so the batch can read
-- back which runs are its own. Rows where nothing changes are left alone.
-- Operations arrive as parallel arrays: org, run id, and kind (reserve, enqueue, release, drain).
UPDATE `__META_DATASET__.org_quota_state` AS q
SET day = b.day,
    runs_today = b.runs_today,
    month = b.month,
    runs_month = b.runs_month,
    active_run_ids = b.active_run_ids,
    queued_run_ids = b.queued_run_ids,
    admitted_by = b.admitted_by,
    updated_at = b.now
FROM (
  SELECT
    org_slug,
    day,
    runs_today + ARRAY_LENGTH(admitted) AS runs_today,
    month,
    runs_month + ARRAY_LENGTH(admitted) AS runs_month,
    ARRAY_CONCAT(kept, admitted) AS active_run_ids,
    ARRAY_CONCAT(
      still_waiting,
      ARRAY(
        SELECT x FROM UNNEST(to_queue) AS x WITH OFFSET o
        WHERE o < queue_limit - ARRAY_LENGTH(still_waiting)
        ORDER BY o)) AS queued_run_ids,
    ARRAY_CONCAT(
      ARRAY(SELECT m FROM UNNEST(marks) AS m WHERE SPLIT(m, '/')[OFFSET(0)] IN UNNEST(kept)),
      ARRAY(SELECT CONCAT(x, '/', batch) FROM UNNEST(admitted) AS x)) AS admitted_by,
    ARRAY_LENGTH(admitted) AS admitted_count,
    released_count,
    LEAST(ARRAY_LENGTH(to_queue), GREATEST(0, queue_limit - ARRAY_LENGTH(still_waiting)))
      AS enqueued_count,
    now
  FROM (
    SELECT
      *,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o < admit_count
        ORDER BY o) AS admitted,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o >= admit_count AND o < ARRAY_LENGTH(waiting)
        ORDER BY o) AS still_waiting,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o >= admit_count AND o >= ARRAY_LENGTH(waiting) AND x IN UNNEST(enqs)
        ORDER BY o) AS to_queue
    FROM (
      SELECT
        *,
        ARRAY_CONCAT(
          waiting,
          ARRAY(
            SELECT x FROM UNNEST(fresh) AS x WITH OFFSET o
            WHERE o < GREATEST(0, room - ARRAY_LENGTH(waiting))
            ORDER BY o)) AS line,
        IF(drives OR ARRAY_LENGTH(waiting) = 0,
           GREATEST(0, LEAST(concurrent_limit - ARRAY_LENGTH(kept), room)),
           0) AS admit_count
      FROM (
        SELECT
          s.org_slug,
          s.concurrent_limit,
          IFNULL(s.queue_limit, 10) AS queue_limit,
          IF(s.day IS NULL OR s.day < r.today, r.today, s.day) AS day,
          IF(s.day IS NULL OR s.day < r.today, 0, s.runs_today) AS runs_today,
          IF(s.month IS NULL OR s.month < r.month_start, r.month_start, s.month) AS month,
          IF(s.month IS NULL OR s.month < r.month_start, 0, s.runs_month) AS runs_month,
          LEAST(
            s.daily_limit - IF(s.day IS NULL OR s.day < r.today, 0, s.runs_today),
            s.monthly_limit - IF(s.month IS NULL OR s.month < r.month_start, 0, s.runs_month))
            AS room,
          ARRAY(SELECT id FROM UNNEST(s.active_run_ids) AS id WHERE id NOT IN UNNEST(r.rels)) AS kept,
          ARRAY(
            SELECT id FROM UNNEST(IFNULL(s.queued_run_ids, [])) AS id WITH OFFSET o
            WHERE id NOT IN UNNEST(r.rels)
            ORDER BY o) AS waiting,
          ARRAY(
            SELECT x FROM UNNEST(r.reqs) AS x WITH OFFSET o
            WHERE x NOT IN UNNEST(s.active_run_ids)
              AND x NOT IN UNNEST(IFNULL(s.queued_run_ids, []))
            ORDER BY o) AS fresh,
          r.enqs,
          r.drives,
          IFNULL(s.admitted_by, []) AS marks,
          ARRAY_LENGTH(ARRAY(SELECT id FROM UNNEST(s.active_run_ids) AS id WHERE id IN UNNEST(r.rels)))
            + ARRAY_LENGTH(ARRAY(
                SELECT id FROM UNNEST(IFNULL(s.queued_run_ids, [])) AS id WHERE id IN UNNEST(r.rels)))
            AS released_count,
          r.batch,
          r.now
        FROM `__META_DATASET__.org_quota_state` AS s
        JOIN (
          -- Parameters are read here only: the emulator binds them in this clause's order.
          SELECT
            org,
            ARRAY_AGG(IF(kind IN ('reserve', 'enqueue'), run, NULL) IGNORE NULLS ORDER BY i) AS reqs,
            ARRAY_AGG(IF(kind = 'enqueue', run, NULL) IGNORE NULLS ORDER BY i) AS enqs,
            ARRAY_AGG(IF(kind = 'release', run, NULL) IGNORE NULLS ORDER BY i) AS rels,
            LOGICAL_OR(kind IN ('release', 'drain')) AS drives,
            ANY_VALUE(@today) AS today,
            ANY_VALUE(@month_start) AS month_start,
            ANY_VALUE(@batch_id) AS batch,
            ANY_VALUE(@now) AS now
          FROM UNNEST(@op_orgs) AS org WITH OFFSET i
          JOIN UNNEST(@op_runs) AS run WITH OFFSET j ON i = j
          JOIN UNNEST(@op_kinds) AS kind WITH OFFSET k ON i = k
          GROUP BY org
        ) AS r ON s.org_slug = r.org
      )
    )
  )
) AS b
WHERE q.org_slug = b.org_slug
  AND (b.admitted_count > 0 OR b.released_count > 0 OR b.enqueued_count > 0)
