-- The org's quota row with its plan limits; nothing when it already has one.
INSERT INTO `__META_DATASET__.org_quota_state`
  (org_slug, daily_limit, monthly_limit, concurrent_limit, day, runs_today, month, runs_month,
   active_run_ids, queue_limit, queued_run_ids, bytes_daily_limit, bytes_monthly_limit,
   bytes_per_job_limit, bytes_today, bytes_month, updated_at)
SELECT @org_slug, @daily_limit, @monthly_limit, @concurrent_limit, NULL, 0, NULL, 0, [],
  @queue_limit, [], @bytes_daily_limit, @bytes_monthly_limit, @bytes_per_job_limit, 0, 0, @now
FROM UNNEST([1])
WHERE NOT EXISTS (
  SELECT 1 FROM `__META_DATASET__.org_quota_state` WHERE org_slug = @org_slug
)
