-- An org's active credentials: metadata only, never the ciphertext. LIMIT 10 (plans allow at
-- most 10 providers).
SELECT
  credential_id,
  provider,
  credential_name,
  fingerprint,
  metadata,
  validation_status,
  last_error,
  UNIX_MICROS(validated_at) AS validated_at_micros,
  UNIX_MICROS(created_at) AS created_at_micros
FROM `__META_DATASET__.org_integration_credentials`
WHERE org_slug = @org_slug
  AND is_active
ORDER BY provider
LIMIT 10
