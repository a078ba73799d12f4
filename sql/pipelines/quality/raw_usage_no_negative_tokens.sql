-- Offending rows: negative token counts.
SELECT event_day, provider, model, input_tokens, output_tokens
FROM `__ORG_DATASET__.raw_usage`
WHERE event_day = @day
  AND (input_tokens < 0 OR output_tokens < 0)
LIMIT 100
