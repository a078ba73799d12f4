-- Admits one run: a single conditional UPDATE. Rolls the day and month over inline, counts the
-- run, and adds its id to the active set, only when the id is not already there and all three
-- limits have room. numDmlAffectedRows = 1 admits; a retry cannot count twice.
UPDATE `__META_DATASET__.org_quota_state`
SET runs_today = IF(day = @today, runs_today, 0) + 1,
    day = @today,
    runs_month = IF(month = @month_start, runs_month, 0) + 1,
    month = @month_start,
    active_run_ids = ARRAY_CONCAT(active_run_ids, [@run_id]),
    updated_at = @now
WHERE org_slug = @org_slug
  AND @run_id NOT IN UNNEST(active_run_ids)
  AND ARRAY_LENGTH(active_run_ids) < concurrent_limit
  AND IF(day = @today, runs_today, 0) < daily_limit
  AND IF(month = @month_start, runs_month, 0) < monthly_limit
