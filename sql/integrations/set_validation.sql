-- The outcome of a validation call for one credential of one org.
UPDATE `__META_DATASET__.org_integration_credentials`
SET validation_status = @validation_status, last_error = @last_error, validated_at = @now
WHERE org_slug = @org_slug
  AND credential_id = @credential_id
