"""The cockpit's read model: what the Airflow plugin's views show, built from the stores.

Every function here reads; none changes production state. The gateway is read through
`GatewayClient` (GET calls only), the registry through `Registry`, reports from
`Settings.reports_dir`, edge channels from the edge store. Promotion runs come in as plain
dictionaries (the Airflow adapter reads them from Airflow's metadata), so this package never
imports Airflow and every view can be built and tested without it.
"""
