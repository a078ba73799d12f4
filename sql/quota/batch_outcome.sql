-- What one admission batch decided, for its orgs: the runs it admitted (marked with its batch
-- id), the ticks it fired, the queued runs it refused (a spent bytes budget), the queue, and
-- each org's limits and usage (runs and bytes), from which a refused run's limit is told.
SELECT
  org_slug,
  daily_limit,
  monthly_limit,
  CAST(day AS STRING) AS day,
  runs_today,
  CAST(month AS STRING) AS month,
  runs_month,
  bytes_daily_limit,
  bytes_monthly_limit,
  IFNULL(bytes_today, 0) AS bytes_today,
  IFNULL(bytes_month, 0) AS bytes_month,
  active_run_ids,
  IFNULL(queued_run_ids, []) AS queued_run_ids,
  ARRAY(
    SELECT SPLIT(m, '/')[OFFSET(0)]
    FROM UNNEST(IFNULL(admitted_by, [])) AS m
    WHERE ENDS_WITH(m, CONCAT('/', @batch_id))) AS admitted,
  ARRAY(
    SELECT SPLIT(f, '|')[OFFSET(0)]
    FROM UNNEST(IFNULL(fired_ticks, [])) AS f
    WHERE ENDS_WITH(f, CONCAT('|', @batch_id))) AS fired,
  ARRAY(
    SELECT SPLIT(m, '/')[OFFSET(0)]
    FROM UNNEST(IFNULL(refused_queued, [])) AS m
    WHERE ENDS_WITH(m, CONCAT('/', @batch_id))) AS refused
FROM `__META_DATASET__.org_quota_state`
WHERE org_slug IN UNNEST(@orgs)
LIMIT @max_orgs
