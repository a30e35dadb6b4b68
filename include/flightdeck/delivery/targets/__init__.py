"""Where a rollout moves traffic: the local gateway (default), AWS Lambda aliases, Kubernetes."""
