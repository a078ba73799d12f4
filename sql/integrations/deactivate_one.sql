-- Deactivates one credential of an org (a setup that found the plan's provider limit exceeded
-- after it inserted, by a setup racing it).
UPDATE `__META_DATASET__.org_integration_credentials`
SET is_active = FALSE, deactivated_at = @now
WHERE org_slug = @org_slug
  AND credential_id = @credential_id
