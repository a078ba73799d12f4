-- A new credential (KMS ciphertext in, never plaintext).
INSERT INTO `__META_DATASET__.org_integration_credentials`
  (credential_id, org_slug, provider, credential_name, encrypted_credential, fingerprint, metadata,
   validation_status, last_error, validated_at, is_active, created_at)
VALUES
  (@credential_id, @org_slug, @provider, @credential_name, FROM_BASE64(@encrypted_credential_b64),
   @fingerprint, @metadata, @validation_status, @last_error, @validated_at, TRUE, @now)
