-- Takes one run out of its org's queue (a queued run cancelled); changes nothing when the run is
-- not waiting there (admitted meanwhile, or never queued).
UPDATE `__META_DATASET__.org_quota_state`
SET queued_run_ids = ARRAY(
      SELECT id FROM UNNEST(queued_run_ids) AS id WITH OFFSET o
      WHERE id != @run_id
      ORDER BY o),
    updated_at = @now
WHERE org_slug = @org_slug
  AND @run_id IN UNNEST(queued_run_ids)
