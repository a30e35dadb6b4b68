"""Platform tooling: capacity planning for the gateway and driving Airflow from CI/CD."""
