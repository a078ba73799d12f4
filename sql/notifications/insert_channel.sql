-- A new alert channel (KMS ciphertexts in, never a URL or a secret in clear), unless the org
-- already has its maximum of live channels (max_channels): 0 rows then.
INSERT INTO `__META_DATASET__.notification_channels`
  (channel_id, org_slug, kind, encrypted_url, url_hint, encrypted_secret, events, pipelines,
   late_after_seconds, queued_after_seconds, created_by, created_at)
SELECT
  @channel_id, @org_slug, @kind, FROM_BASE64(@encrypted_url_b64), @url_hint,
  IF(@encrypted_secret_b64 = '', NULL, FROM_BASE64(@encrypted_secret_b64)),
  @events, @pipelines, @late_after_seconds, @queued_after_seconds, @created_by, @now
FROM UNNEST([1])
WHERE (
  SELECT COUNT(*) FROM `__META_DATASET__.notification_channels`
  WHERE org_slug = @org_slug AND deleted_at IS NULL
) < @max_channels
