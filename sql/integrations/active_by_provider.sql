-- The org's active credential for one provider, with its ciphertext (base64) for decryption at
-- the point of use. LIMIT 1.
SELECT
  credential_id,
  provider,
  credential_name,
  fingerprint,
  metadata,
  validation_status,
  last_error,
  UNIX_MICROS(validated_at) AS validated_at_micros,
  UNIX_MICROS(created_at) AS created_at_micros,
  TO_BASE64(encrypted_credential) AS encrypted_credential_b64
FROM `__META_DATASET__.org_integration_credentials`
WHERE org_slug = @org_slug
  AND provider = @provider
  AND is_active
ORDER BY created_at DESC
LIMIT 1
