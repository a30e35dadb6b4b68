"""The one settings object. Every value comes from an environment variable `FLIGHTDECK_<NAME>`
(or a `.env` file), with defaults for the embedded mode: everything under `FLIGHTDECK_HOME`.

Nothing is read at import time: call `get_settings()`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flightdeck.errors import ConfigError

# A name the registry, file paths and metric labels all accept: registered models, channels, experiments.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A registered model version as every DAG names it (Param `model_ref`): its number or an alias.
MODEL_REF_PATTERN = r"^(?:[0-9]+|[A-Za-z][A-Za-z0-9_-]*)$"


def safe_run_id(run_id: str) -> str:
    """A run id (Airflow's hold ':' and '+') as a folder name or MLflow tag key part."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)

# Admin tokens guard route changes: short or placeholder ones are refused at gateway start.
MIN_ADMIN_TOKEN_CHARS = 24
ADMIN_TOKEN_PLACEHOLDER = "change-me"


class Settings(BaseSettings):
    """flightdeck's configuration. Paths not set explicitly live under `home`."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTDECK_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".flightdeck",
                       description="Root of every local store in the embedded mode.")
    data_dir: Path | None = Field(None, description="Raw partitions ds=YYYY-MM-DD; default home/data/raw.")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking/registry URI; default a sqlite file under home/mlflow.")
    mlflow_artifact_root: str | None = Field(
        None, description="Where new experiments store artifacts; default home/mlflow/artifacts.")
    experiment_name: str = "flightdeck"
    model_name: str = Field("flightdeck-classifier", pattern=NAME_PATTERN)

    seed: int = 42
    rows_per_day: int = Field(2000, gt=0)
    promotion_margin: float = Field(0.001, ge=0, description="AUC a challenger must gain over the champion.")
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    parity_tolerance: float = Field(1e-5, gt=0)
    parity_rows: int = Field(1000, gt=0)

    dask_scheduler_address: str | None = Field(
        None, description="tcp://host:port of an existing Dask scheduler; unset means a local cluster of worker processes.")
    dask_workers: int | None = Field(None, gt=0, description="Local cluster workers; default one per core.")

    batch_cron: str = Field("0 2 * * *", description="When batch_score runs (UTC); it scores the previous day.")
    decision_threshold: float = Field(0.5, gt=0, lt=1, description="Score at or above which the label is 1.")
    bad_fraction_threshold: float = Field(
        0.05, ge=0, le=1, description="Share of quarantined input rows above which a batch run fails.")
    psi_alert_threshold: float = Field(0.2, gt=0, description="PSI of a feature or the score that raises an alert.")
    volume_tolerance: float = Field(
        0.5, gt=0, description="Alert when today's rows differ from the trailing mean by more than this share.")
    trailing_days: int = Field(7, gt=0, description="Days of history the volume check compares against.")
    sensor_timeout_seconds: int = Field(6 * 3600, gt=0, description="How long batch_score waits for its input.")
    alert_conn_id: str = Field("flightdeck_alerts", description="Airflow connection for drift/failure alerts.")

    # The real-time gateway (flightdeck.serving).
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8000, ge=0, le=65535)
    gateway_workers: int = Field(2, gt=0, description="uvicorn worker processes.")
    grpc_port: int = Field(8081, ge=0, le=65535, description="OIP v2 gRPC port; 0 turns gRPC off.")
    gateway_database_url: str | None = Field(
        None, description="SQLAlchemy URL of the route table, stats and prediction log; "
                          "default a sqlite file under home/gateway (PostgreSQL in production).")
    routes_file: Path | None = Field(
        None, description="Route table (YAML/JSON) seeded when the store has none; "
                          "default one endpoint `default` on the champion.")
    admin_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description='Admin API callers, JSON {"name": "token"}; none means admin is closed.')
    max_batch_rows: int = Field(1000, gt=0, description="Rows per request above which the gateway answers 413.")
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Request bodies above this get 413.")
    cache_backend: str = Field("memory", pattern="^(memory|redis|off)$")
    cache_size: int = Field(10_000, gt=0, description="Entries of the in-process response cache.")
    cache_ttl_seconds: int = Field(3600, gt=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    predlog_queue_size: int = Field(100_000, gt=0, description="Prediction-log rows buffered before drops.")
    predlog_queue_bytes: int = Field(256 * 1024 * 1024, gt=0,
                                     description="Estimated bytes of prediction-log rows buffered before drops.")
    predlog_batch_size: int = Field(1000, gt=0)
    predlog_flush_seconds: float = Field(0.2, gt=0)
    route_poll_seconds: float = Field(0.5, gt=0, description="How often a worker looks for a new route table.")
    stats_flush_seconds: float = Field(1.0, gt=0, description="How often a worker publishes its running sums.")
    alias_refresh_seconds: float = Field(30.0, gt=0, description="How often aliases are re-resolved.")
    shadow_queue_size: int = Field(1000, gt=0, description="Shadow requests waiting before drops.")
    shadow_queue_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Estimated bytes of mirrored requests (the JSON of their model "
                                            "inputs) waiting for their shadow before drops.")
    routing_seed: int | None = Field(
        None, description="Seed of each gateway worker's random draws (canary weights, shadow percent, drill "
                          "faults); unset: unseeded. For reproducible tests, not production.")

    # The stream scorer (flightdeck.streaming).
    stream_alerts: str = Field("flightdeck:alerts", min_length=1,
                               description="Redis stream the scorer publishes drift alerts to (watched by Airflow).")
    stream_redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis holding the event, result and alert streams and the "
        "scorer's checkpoint: run it with maxmemory-policy noeviction and AOF persistence, never the cache's.")
    stream_broker: str = Field(
        "redis", pattern="^(redis|kinesis)$", description="The stream scorer's broker, for the drift investigation: "
        "redis (alerts watched on stream_redis_url), or kinesis (stream_alerts names the Kinesis alert stream, "
        "watched with the aws_default connection; results and windows read from the scorer's DynamoDB table).")

    # Releases (flightdeck.delivery.policy).
    release_policy_file: Path | None = Field(
        None, description="Release policy (YAML) whose floors every rollout's Params must meet; default "
                          "include/config/release_policy.yaml of this repository. Admins only.")

    # Experiments (flightdeck.experiments).
    experiments_dir: Path | None = Field(
        None, description="Experiment definitions (YAML); default include/config/experiments/ of this repository.")

    # The self-running pipeline (flightdeck.pipeline).
    pipeline_config: Path | None = Field(
        None, description="Which links of the self-running pipeline are on, per model (YAML); default "
                          "home/pipeline.yaml. No file: every link off.")

    def check_admin_tokens(self) -> None:
        """ConfigError unless every admin token is at least `MIN_ADMIN_TOKEN_CHARS` long and not
        a placeholder from .env.example; the gateway calls this before it starts."""
        for name, secret in self.admin_tokens.items():
            token = secret.get_secret_value()
            if token.lower().startswith(ADMIN_TOKEN_PLACEHOLDER):
                problem = f"the token of {name!r} is the placeholder from .env.example"
            elif len(token) < MIN_ADMIN_TOKEN_CHARS:
                problem = f"the token of {name!r} is shorter than {MIN_ADMIN_TOKEN_CHARS} characters"
            else:
                continue
            raise ConfigError("FLIGHTDECK_ADMIN_TOKENS", problem,
                              'generate one with `python -c "import secrets; print(secrets.token_hex(24))"`')

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def raw_dir(self) -> Path:
        return (self.data_dir or self.home / "data" / "raw").expanduser().resolve()

    @property
    def staging_dir(self) -> Path:
        """Scratch space for artifacts handed from one task to the next, one folder per run."""
        return self.home / "staging"

    @property
    def predictions_dir(self) -> Path:
        return self.home / "data" / "predictions"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "data" / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def experiment_definitions_dir(self) -> Path:
        return (self.experiments_dir or Path(__file__).resolve().parents[1] / "config" / "experiments").expanduser()

    @property
    def pipeline_file(self) -> Path:
        return (self.pipeline_config or self.home / "pipeline.yaml").expanduser()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def gateway_dir(self) -> Path:
        return self.home / "gateway"

    @property
    def gateway_db_url(self) -> str:
        return self.gateway_database_url or f"sqlite:///{self.gateway_dir / 'gateway.db'}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or (self.home / "mlflow" / "artifacts").as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
