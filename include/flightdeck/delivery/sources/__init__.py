"""Metric sources: where a metric gate reads what each variant did since a rollout step began.

One module per backend, all answering with a `VariantWindow` per (variant, model_version)
(the protocol, `WindowStart` and `MetricSourceError` are in `base`):

* `gateway`: the gateway's running sums (GET /stats/{endpoint}), exact, by route version;
* `prometheus`: the counters and histograms the gateway exports, by time, at scrape resolution;
* `cloudwatch`: a Lambda alias's own metrics in CloudWatch, per executed version.

`make_source(**config)` (in `factory`, the entry point callers use) builds one from a
JSON-safe configuration, so an Airflow trigger can store it.
"""

from flightdeck.delivery.sources.factory import make_source

__all__ = ["make_source"]
