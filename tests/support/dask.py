"""Start a real `dask scheduler` and `dask worker` processes on loopback for tests.

The `dask` command is the one installed next to the running interpreter, so the workers
import the same flightdeck as the test. Every process (and any child a nanny starts) is
terminated by `close()`, which the context manager calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from flightdeck.devtools.launch import free_port, port_free
from tests.support.poll import eventually

DASK = Path(sys.executable).with_name("dask")


class DaskProcesses:
    """A scheduler plus workers as subprocesses; logs go to files under `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.address = ""
        self.workers: list[subprocess.Popen] = []
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start_scheduler(self, timeout: float = 30) -> str:
        port = free_port()
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        self.address = f"tcp://127.0.0.1:{port}"

        def listening() -> bool:
            self._check_alive()
            return not port_free("127.0.0.1", port)

        eventually(listening, timeout, what=f"the dask scheduler to listen on {self.address}", detail=self.logs)
        return self.address

    def start_worker(self, nanny: bool = True) -> subprocess.Popen:
        """One single-threaded worker; without a nanny, killing the process kills the worker for good."""
        args = ["worker", self.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                "--host", "127.0.0.1"]
        if not nanny:
            args.append("--no-nanny")
        proc = self._spawn(f"worker-{len(self.workers)}", *args)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a process and its children, as the kernel's OOM killer would."""
        for child in _tree(proc.pid)[::-1]:
            child.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def close(self) -> None:
        tree = [p for proc in self._procs for p in _tree(proc.pid)]
        for proc in tree:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self._procs:
            proc.wait(timeout=10)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.log_dir, env=os.environ.copy())
        log.close()
        self._procs.append(proc)
        return proc

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:2]} exited with {proc.returncode}:\n{self.logs()}")


def _tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants, parents first; empty if it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
