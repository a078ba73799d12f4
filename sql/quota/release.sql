-- Frees one run's concurrency slot. Keyed by run id, so a retry cannot release twice.
UPDATE `__META_DATASET__.org_quota_state`
SET active_run_ids = ARRAY(SELECT id FROM UNNEST(active_run_ids) AS id WHERE id != @run_id),
    updated_at = @now
WHERE org_slug = @org_slug
  AND @run_id IN UNNEST(active_run_ids)
