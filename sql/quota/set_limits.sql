-- Admin change of one org's limits.
UPDATE `__META_DATASET__.org_quota_state`
SET daily_limit = @daily_limit,
    monthly_limit = @monthly_limit,
    concurrent_limit = @concurrent_limit,
    -- A negative queue limit keeps the current one.
    queue_limit = IF(@queue_limit < 0, queue_limit, @queue_limit),
    -- A negative bytes budget (or per-job cap) keeps the current one.
    bytes_daily_limit = IF(@bytes_daily_limit < 0, bytes_daily_limit, @bytes_daily_limit),
    bytes_monthly_limit = IF(@bytes_monthly_limit < 0, bytes_monthly_limit, @bytes_monthly_limit),
    bytes_per_job_limit = IF(@bytes_per_job_limit < 0, bytes_per_job_limit, @bytes_per_job_limit),
    updated_at = @now
WHERE org_slug = @org_slug
