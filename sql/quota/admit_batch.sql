-- The admission coordinator's one statement per batch (group commit): for every org in the
-- batch it releases the ended runs, then admits its waiting runs in arrival order, as many as fit
-- the concurrent, daily and monthly limits. Day and month only roll forward, so an instance
-- with a lagging clock never resets a counter. A run id already active is not admitted again
-- (a retried batch cannot count twice); a released id that is not active changes nothing.
-- Each admitted id is marked with the batch id, so the batch can read back which runs are
-- its own. Rows where nothing is admitted or released are left alone.
-- Operations arrive as parallel arrays: org, run id, and kind ('reserve' or 'release').
UPDATE `__META_DATASET__.org_quota_state` AS q
SET day = b.day,
    runs_today = b.runs_today,
    month = b.month,
    runs_month = b.runs_month,
    active_run_ids = b.active_run_ids,
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
      ARRAY(SELECT m FROM UNNEST(marks) AS m WHERE SPLIT(m, '/')[OFFSET(0)] IN UNNEST(kept)),
      ARRAY(SELECT CONCAT(x, '/', batch) FROM UNNEST(admitted) AS x)) AS admitted_by,
    ARRAY_LENGTH(admitted) AS admitted_count,
    released_count,
    now
  FROM (
    SELECT
      *,
      ARRAY(
        SELECT x FROM UNNEST(fresh) AS x WITH OFFSET o
        WHERE o < GREATEST(0, LEAST(
          concurrent_limit - ARRAY_LENGTH(kept),
          daily_limit - runs_today,
          monthly_limit - runs_month))
        ORDER BY o) AS admitted
    FROM (
      SELECT
        s.org_slug,
        s.concurrent_limit,
        s.daily_limit,
        s.monthly_limit,
        IF(s.day IS NULL OR s.day < r.today, r.today, s.day) AS day,
        IF(s.day IS NULL OR s.day < r.today, 0, s.runs_today) AS runs_today,
        IF(s.month IS NULL OR s.month < r.month_start, r.month_start, s.month) AS month,
        IF(s.month IS NULL OR s.month < r.month_start, 0, s.runs_month) AS runs_month,
        ARRAY(SELECT id FROM UNNEST(s.active_run_ids) AS id WHERE id NOT IN UNNEST(r.rels)) AS kept,
        ARRAY(
          SELECT x FROM UNNEST(r.reqs) AS x WITH OFFSET o
          WHERE x NOT IN UNNEST(s.active_run_ids)
          ORDER BY o) AS fresh,
        IFNULL(s.admitted_by, []) AS marks,
        ARRAY_LENGTH(ARRAY(SELECT id FROM UNNEST(s.active_run_ids) AS id WHERE id IN UNNEST(r.rels)))
          AS released_count,
        r.batch,
        r.now
      FROM `__META_DATASET__.org_quota_state` AS s
      JOIN (
        -- Parameters are read here only: the emulator binds them in this clause's order.
        SELECT
          org,
          ARRAY_AGG(IF(kind = 'reserve', run, NULL) IGNORE NULLS ORDER BY i) AS reqs,
          ARRAY_AGG(IF(kind = 'release', run, NULL) IGNORE NULLS ORDER BY i) AS rels,
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
) AS b
WHERE q.org_slug = b.org_slug
  AND (b.admitted_count > 0 OR b.released_count > 0)
