-- Offending rows: negative totals for the day.
SELECT day, provider, model
FROM `__ORG_DATASET__.usage_daily`
WHERE day = @day
  AND (input_tokens < 0 OR output_tokens < 0 OR cost_usd < 0)
LIMIT 100
