-- One org's audit events, newest first, after the cursor, within the last 90 days (partition
-- filter). LIMIT is page size + 1 (the next-page probe).
SELECT
  audit_id,
  actor,
  action,
  resource_type,
  resource_id,
  details,
  request_id,
  UNIX_MICROS(created_at) AS created_at_micros
FROM `__META_DATASET__.audit_logs`
WHERE org_slug = @org_slug
  AND created_at >= TIMESTAMP_SUB(@now, INTERVAL 90 DAY)
  AND (
    UNIX_MICROS(created_at) < @before_micros
    OR (UNIX_MICROS(created_at) = @before_micros AND audit_id < @before_id)
  )
ORDER BY created_at DESC, audit_id DESC
LIMIT @limit
