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
-- A schedule's tick or a backfill's day (kind tick_reserve or tick_enqueue, run given as
-- "run_id|key|logical time") is taken only if its run id was never fired before: fired ticks are
-- remembered per org (the last 1000, as "run_id|key|logical|batch"), so concurrent firings of
-- one tick by several instances collapse into one, and a tick fired once is never fired again,
-- whatever became of its run (unless the refund below undoes its firing). A fired tick is then
-- admitted, queued or refused like any run.
-- A refund (kind 'refund') is a release for a run whose trigger was never answered 2xx (its
-- decision came too late, or the batch's outcome is unknown): it frees the slot or the place in
-- the queue like a release and gives back the daily and monthly count the run took, only when the
-- id is still active (so a repeated refund, or one for a run never admitted, changes nothing) and
-- only on the day and month the count is for. A refund given as "run_id|batch" of a tick that
-- batch fired also forgets the firing, so a later pass fires the tick again (its first firing
-- was undone, and the run never started).
-- A release or refund given as "run_id|batch" frees the slot only if that batch admitted it (its
-- mark "run_id/batch" is there): the clean-up of one admission never frees (or uncounts) a later
-- admission of the same run id, such as an Idempotency-Key's retry admitted meanwhile. Given as
-- "run_id" (the run's own end, the reaper), it frees whatever slot the id holds.
-- Each admission mark is "run_id/batch", and a batch id starts with the batch's time in
-- microseconds ("<micros>_<uuid>"), so the reaper dates a slot from its admission.
-- Bytes budgets: a release of a run that billed bytes comes with a 'bill' operation
-- ("run_id=bytes"); the bytes are added to the org's bytes of the day and month only when the
-- run's slot is freed by this batch (so a repeated release never counts them twice). While the
-- day's or the month's bytes have reached a budget, nothing is admitted or queued, and a batch
-- that releases or drains for the org takes its queued runs out of the queue, refused: they are
-- marked "run_id/batch" in refused_queued (kept until the next such batch), so the batch reads
-- back which ones it refused and records them REFUSED. A budget is NULL when the org has none.
-- Operations arrive as parallel arrays: org, run id, and kind (reserve, enqueue, release, refund,
-- bill, drain, tick_reserve, tick_enqueue).
-- The steps are a chain of named subqueries (r → state → lined → split → the new row), not
-- subqueries nested in FROM: a parser that copies each FROM's subtree (the emulator's does, per
-- nesting level) then reads it in half the time, and each step reads from the one before by name.
UPDATE `__META_DATASET__.org_quota_state` AS q
SET day = b.day,
    runs_today = b.runs_today,
    month = b.month,
    runs_month = b.runs_month,
    active_run_ids = b.active_run_ids,
    queued_run_ids = b.queued_run_ids,
    admitted_by = b.admitted_by,
    fired_ticks = b.fired_ticks,
    refused_queued = b.refused_queued,
    bytes_today = b.bytes_today,
    bytes_month = b.bytes_month,
    updated_at = b.now
FROM (
  WITH r AS (
    -- Parameters are read here only: the emulator binds them in this clause's order.
    SELECT
      org,
      ARRAY_AGG(
        IF(kind IN ('reserve', 'enqueue', 'tick_reserve', 'tick_enqueue'),
           SPLIT(run, '|')[OFFSET(0)], NULL)
        IGNORE NULLS ORDER BY i) AS reqs,
      ARRAY_AGG(
        IF(kind IN ('enqueue', 'tick_enqueue'), SPLIT(run, '|')[OFFSET(0)], NULL)
        IGNORE NULLS ORDER BY i) AS enqs,
      ARRAY_AGG(IF(kind IN ('tick_reserve', 'tick_enqueue'), run, NULL) IGNORE NULLS ORDER BY i)
        AS ticks,
      ARRAY_AGG(IF(kind IN ('release', 'refund'), SPLIT(run, '|')[OFFSET(0)], NULL)
        IGNORE NULLS ORDER BY i) AS rel_ids,
      ARRAY_AGG(IF(kind IN ('release', 'refund') AND STRPOS(run, '|') = 0, run, NULL)
        IGNORE NULLS ORDER BY i) AS rels,
      ARRAY_AGG(IF(kind IN ('release', 'refund') AND STRPOS(run, '|') > 0, REPLACE(run, '|', '/'), NULL)
        IGNORE NULLS ORDER BY i) AS rel_marks,
      ARRAY_AGG(IF(kind = 'refund' AND STRPOS(run, '|') = 0, run, NULL) IGNORE NULLS ORDER BY i)
        AS refunds,
      ARRAY_AGG(IF(kind = 'refund' AND STRPOS(run, '|') > 0, REPLACE(run, '|', '/'), NULL)
        IGNORE NULLS ORDER BY i) AS refund_marks,
      ARRAY_AGG(IF(kind = 'bill', run, NULL) IGNORE NULLS) AS bills,
      LOGICAL_OR(kind IN ('release', 'refund', 'drain')) AS drives,
      ANY_VALUE(@today) AS today,
      ANY_VALUE(@month_start) AS month_start,
      ANY_VALUE(@batch_id) AS batch,
      ANY_VALUE(@now) AS now
    FROM UNNEST(@op_orgs) AS org WITH OFFSET i
    JOIN UNNEST(@op_runs) AS run WITH OFFSET j ON i = j
    JOIN UNNEST(@op_kinds) AS kind WITH OFFSET k ON i = k
    GROUP BY org
  ),
  state AS (
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
      ARRAY(
        SELECT id FROM UNNEST(s.active_run_ids) AS id
        WHERE id NOT IN UNNEST(r.rels)
          AND id NOT IN (SELECT SPLIT(m, '/')[OFFSET(0)] FROM UNNEST(IFNULL(s.admitted_by, [])) AS m
                         WHERE m IN UNNEST(r.rel_marks))) AS kept,
      -- Counts of a past day or month are 0 already, so subtracting a refund leaves 0.
      ARRAY_LENGTH(ARRAY(
        SELECT id FROM UNNEST(s.active_run_ids) AS id
        WHERE id IN UNNEST(r.refunds)
          OR id IN (SELECT SPLIT(m, '/')[OFFSET(0)] FROM UNNEST(IFNULL(s.admitted_by, [])) AS m
                    WHERE m IN UNNEST(r.refund_marks)))) AS refunded,
      ARRAY(
        SELECT id FROM UNNEST(IFNULL(s.queued_run_ids, [])) AS id WITH OFFSET o
        WHERE id NOT IN UNNEST(r.rel_ids)
        ORDER BY o) AS waiting,
      ARRAY(
        SELECT x FROM UNNEST(r.reqs) AS x WITH OFFSET o
        WHERE x NOT IN UNNEST(s.active_run_ids)
          AND x NOT IN UNNEST(IFNULL(s.queued_run_ids, []))
          AND x NOT IN (SELECT SPLIT(f, '|')[OFFSET(0)] FROM UNNEST(IFNULL(s.fired_ticks, [])) AS f)
        ORDER BY o) AS fresh,
      ARRAY(
        SELECT CONCAT(t, '|', r.batch) FROM UNNEST(r.ticks) AS t WITH OFFSET o
        WHERE SPLIT(t, '|')[OFFSET(0)] NOT IN
            (SELECT SPLIT(f, '|')[OFFSET(0)] FROM UNNEST(IFNULL(s.fired_ticks, [])) AS f)
          AND SPLIT(t, '|')[OFFSET(0)] NOT IN UNNEST(s.active_run_ids)
          AND SPLIT(t, '|')[OFFSET(0)] NOT IN UNNEST(IFNULL(s.queued_run_ids, []))
        ORDER BY o) AS new_ticks,
      IFNULL(s.fired_ticks, []) AS old_ticks,
      IFNULL(s.refused_queued, []) AS old_refused,
      r.enqs,
      r.drives,
      r.refund_marks,
      IFNULL(s.admitted_by, []) AS marks,
      ARRAY_LENGTH(s.active_run_ids) AS active_count,
      ARRAY_LENGTH(IFNULL(s.queued_run_ids, [])) AS queued_count,
      s.bytes_daily_limit,
      s.bytes_monthly_limit,
      IF(s.day IS NULL OR s.day < r.today, 0, IFNULL(s.bytes_today, 0)) AS bytes_before_today,
      IF(s.month IS NULL OR s.month < r.month_start, 0, IFNULL(s.bytes_month, 0))
        AS bytes_before_month,
      -- The bills of runs whose slot this batch frees (an active id it releases).
      (SELECT IFNULL(SUM(CAST(SPLIT(x, '=')[OFFSET(1)] AS INT64)), 0)
       FROM UNNEST(r.bills) AS x
       WHERE SPLIT(x, '=')[OFFSET(0)] IN UNNEST(s.active_run_ids)
         AND SPLIT(x, '=')[OFFSET(0)] IN UNNEST(r.rels)) AS billed_now,
      r.batch,
      r.now
    FROM `__META_DATASET__.org_quota_state` AS s
    JOIN r ON s.org_slug = r.org
  ),
  lined AS (
    SELECT
      *,
      ARRAY_CONCAT(
        waiting,
        ARRAY(
          SELECT x FROM UNNEST(fresh) AS x WITH OFFSET o
          WHERE o < GREATEST(0, room - ARRAY_LENGTH(waiting))
            AND NOT (IFNULL(bytes_before_today + billed_now >= bytes_daily_limit, FALSE)
                     OR IFNULL(bytes_before_month + billed_now >= bytes_monthly_limit, FALSE))
          ORDER BY o)) AS line,
      IF((drives OR ARRAY_LENGTH(waiting) = 0)
           AND NOT (IFNULL(bytes_before_today + billed_now >= bytes_daily_limit, FALSE)
                    OR IFNULL(bytes_before_month + billed_now >= bytes_monthly_limit, FALSE)),
         GREATEST(0, LEAST(concurrent_limit - ARRAY_LENGTH(kept), room)),
         0) AS admit_count,
      IFNULL(bytes_before_today + billed_now >= bytes_daily_limit, FALSE)
        OR IFNULL(bytes_before_month + billed_now >= bytes_monthly_limit, FALSE) AS spent,
      bytes_before_today + billed_now AS bytes_today,
      bytes_before_month + billed_now AS bytes_month
    FROM state
  ),
  split AS (
    SELECT
      *,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o < admit_count
        ORDER BY o) AS admitted,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o >= admit_count AND o < ARRAY_LENGTH(waiting) AND NOT (spent AND drives)
        ORDER BY o) AS still_waiting,
      ARRAY(
        SELECT x FROM UNNEST(line) AS x WITH OFFSET o
        WHERE o >= admit_count AND o >= ARRAY_LENGTH(waiting) AND x IN UNNEST(enqs)
        ORDER BY o) AS to_queue
    FROM lined
  )
  SELECT
    org_slug,
    day,
    GREATEST(0, runs_today - refunded) + ARRAY_LENGTH(admitted) AS runs_today,
    month,
    GREATEST(0, runs_month - refunded) + ARRAY_LENGTH(admitted) AS runs_month,
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
    ARRAY(
      SELECT f FROM UNNEST(ARRAY_CONCAT(old_ticks, new_ticks)) AS f WITH OFFSET o
      WHERE o >= ARRAY_LENGTH(old_ticks) + ARRAY_LENGTH(new_ticks) - 1000
        AND CONCAT(SPLIT(f, '|')[OFFSET(0)], '/', SPLIT(f, '|')[OFFSET(3)])
            NOT IN UNNEST(refund_marks)
      ORDER BY o) AS fired_ticks,
    IF(spent AND drives AND ARRAY_LENGTH(waiting) > 0,
       ARRAY(SELECT CONCAT(x, '/', batch) FROM UNNEST(waiting) AS x),
       old_refused) AS refused_queued,
    bytes_today,
    bytes_month,
    IF(spent AND drives, ARRAY_LENGTH(waiting), 0) AS dropped_count,
    ARRAY_LENGTH(new_ticks) AS fired_count,
    ARRAY_LENGTH(admitted) AS admitted_count,
    active_count - ARRAY_LENGTH(kept) + queued_count - ARRAY_LENGTH(waiting) AS released_count,
    LEAST(ARRAY_LENGTH(to_queue), GREATEST(0, queue_limit - ARRAY_LENGTH(still_waiting)))
      AS enqueued_count,
    now
  FROM split
) AS b
WHERE q.org_slug = b.org_slug
  AND (b.admitted_count > 0 OR b.released_count > 0 OR b.enqueued_count > 0 OR b.fired_count > 0
       OR b.dropped_count > 0)
