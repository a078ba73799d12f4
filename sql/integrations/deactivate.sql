-- Deactivates an org's active credentials for one provider (replaced or deleted; never erased).
UPDATE `__META_DATASET__.org_integration_credentials`
SET is_active = FALSE, deactivated_at = @now
WHERE org_slug = @org_slug
  AND provider = @provider
  AND is_active
  AND credential_id != @keep_credential_id
