-- Deactivates an org's active credentials for one provider that are older than the one kept
-- (replaced; never erased). Older means earlier created_at, then smaller credential_id: two
-- setups racing each deactivate only what came before them, so the newer one stays active.
-- A delete keeps nothing: it passes an empty id and a keep time past every credential.
UPDATE `__META_DATASET__.org_integration_credentials`
SET is_active = FALSE, deactivated_at = @now
WHERE org_slug = @org_slug
  AND provider = @provider
  AND is_active
  AND credential_id != @keep_credential_id
  AND (
    created_at < @keep_created_at
    OR (created_at = @keep_created_at AND credential_id < @keep_credential_id)
  )
