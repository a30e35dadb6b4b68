"""Launch helpers shared by the demos and the tests: free loopback ports and the environment of
an `airflow standalone` with this repository's DAGs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port`."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when nothing listens there, else a port the kernel hands out."""
    if preferred and port_free(host, preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_process_group(process: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM to the process group that `process` leads, SIGKILL after `timeout` seconds; then
    SIGKILL whatever of the group outlived its leader (Airflow's task runners, uvicorn workers).
    Returns the leader's exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


# This repository's airflow_local_settings.py (an editable install: deploy/ sits beside include/).
LOCAL_SETTINGS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "airflow"


def standalone_env(airflow_home: Path, dags_folder: str, port: int, flightdeck_home: Path,
                   **extra: str) -> dict[str, str]:
    """The environment of `airflow standalone` (and of its CLI) on loopback port `port`: every
    user is admin, LocalExecutor, a short scheduler heartbeat, each DAG file parsed once, and
    the repository's local settings on the path (its scheduler preloads what the tasks import)."""
    python_path = [str(LOCAL_SETTINGS_DIR)] if (LOCAL_SETTINGS_DIR / "airflow_local_settings.py").is_file() else []
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **({"PYTHONPATH": os.pathsep.join(python_path)} if python_path else {}),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": dags_folder,
        "AIRFLOW__CORE__LOAD_EXAMPLES": os.environ.get("AIRFLOW__CORE__LOAD_EXAMPLES", "False"),
        "AIRFLOW__CORE__EXECUTOR": os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Tasks reach the Execution API on the api-server's port, not the default 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # No login: every user is admin (the api-server listens on loopback only).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # Parse each DAG file once, not every 30 s: a dozen files re-parsed twice a minute cost
        # the dag-processor most of a core, which the scheduler and the tasks need.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        # Another Airflow on this machine may hold the default log-server ports.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port("127.0.0.1", 8793)),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port("127.0.0.1", 8794)),
        "FLIGHTDECK_HOME": str(flightdeck_home),
        **extra,
    }
