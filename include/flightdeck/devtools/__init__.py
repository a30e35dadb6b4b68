"""Tools for running flightdeck on one machine, not part of the domain: the gateway and release
demos, a steady HTTP load, a plain-HTTP client of Airflow's REST API, and the launchers (free
ports, process groups, an `airflow standalone`) that the demos and the tests share."""
