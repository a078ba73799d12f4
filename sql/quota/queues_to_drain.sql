-- Orgs with runs waiting in their queue beside a free slot and room left today and this
-- month (a restart, a raised limit, or a batch whose read-back was lost left them waiting).
SELECT org_slug
FROM `__META_DATASET__.org_quota_state`
WHERE ARRAY_LENGTH(IFNULL(queued_run_ids, [])) > 0
  AND ARRAY_LENGTH(active_run_ids) < concurrent_limit
ORDER BY org_slug
LIMIT 100
