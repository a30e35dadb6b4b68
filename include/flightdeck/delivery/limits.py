"""Shape limits of a rollout that DAG files need at parse time (kept free of heavy imports)."""

# Canary steps are task slots in the DAG (a DAG's shape is fixed when it is parsed); a plan
# uses the first len(steps) of them and the rest report "not in this plan".
MAX_STEPS = 5
