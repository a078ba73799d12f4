-- Offending rows: no provider or no model.
SELECT event_day, provider, model
FROM `__ORG_DATASET__.raw_usage`
WHERE event_day = @day
  AND (provider IS NULL OR provider = '' OR model IS NULL OR model = '')
LIMIT 100
