-- Suspends or reactivates one org.
UPDATE `__META_DATASET__.org_profiles`
SET status = @status, updated_at = @now
WHERE org_slug = @org_slug
