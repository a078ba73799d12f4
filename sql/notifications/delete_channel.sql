-- Deletes one of an org's live channels (its row stays, with deleted_at).
UPDATE `__META_DATASET__.notification_channels`
SET deleted_at = @now
WHERE org_slug = @org_slug
  AND channel_id = @channel_id
  AND deleted_at IS NULL
