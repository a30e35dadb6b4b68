"""Safe release: rollout plans, metric gates (statistics), metric sources and deployment targets.

Nothing here imports Airflow; the promotion DAGs call it through `flightdeck.airflow`.
"""
