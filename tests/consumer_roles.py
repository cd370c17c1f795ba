"""The consumer logins the consumer tests read as (created by the consumer_db plugin)."""

ANALYST, SCIENTIST, OUTSIDER = "pc_analyst", "pc_scientist", "pc_outsider"
