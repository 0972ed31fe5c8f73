"""A complete local deployment on loopback: moto (S3, SQS, KMS), the Fire Insights simulator, and Airflow.

:class:`LocalStack` starts every part as a subprocess in its own process group, so :meth:`LocalStack.stop`
(also run on exit) ends each part with everything it spawned (LocalExecutor workers, task processes,
API-server workers). It then creates what a real installation has:

- an S3 bucket whose ``_SUCCESS`` markers are announced by S3 event notifications on two SQS queues,
  one per file-watcher DAG (``landing/daily/`` and ``landing/events/``): each DAG owns its queue, so
  neither consumes the other's events;
- a KMS key, and the Fire Insights token encrypted with it;
- the Airflow connections ``aws_default`` (pointing at moto through ``endpoint_url``) and
  ``fire_insights_default`` (the simulator's URL and the KMS ciphertext, no clear token);
- the Airflow Variables that configure both DAGs of ``dags/``.

Airflow runs on SQLite under ``<root>/airflow`` with the LocalExecutor: api-server, scheduler,
dag-processor and triggerer, each one process. The login is ``admin`` / ``admin`` (simple auth manager).

Used by ``make demo`` (:mod:`demo.run`) and by the end-to-end tests (``tests/e2e``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"
DAILY_DAG_ID = "sparkflows_file_watcher"
EVENTS_DAG_ID = "sparkflows_file_watcher_events"
DAG_IDS = (DAILY_DAG_ID, EVENTS_DAG_ID)

T = TypeVar("T")


class StackError(RuntimeError):
    """A part of the local stack did not start or answer as expected."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25,
             check: Callable[[], None] | None = None) -> T:
    """Poll ``condition`` until it returns something truthy; raise :class:`StackError` after ``timeout`` s.

    ``check`` runs on every round and may raise to give up early (a process that died, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------- processes


class ManagedProcess:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path,
                 cwd: Path = REPO) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # A new session makes the child the leader of its own process group: stopping the group
            # reaches every grandchild, and a Ctrl-C in the terminal reaches only us, who stop it in order.
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`StackError` with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self.proc.returncode}; last lines of {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``timeout`` seconds."""
        stop_all([self], timeout)

    def group_gone(self) -> bool:
        """True once no process of the group is left (the leader is reaped on the way)."""
        if self.proc is None:
            return True
        self.proc.poll()
        try:
            # Succeeds while any member exists, including an unreaped leader; poll() above reaps it.
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 15.0) -> None:
    """Stop several process groups at once: SIGTERM all, wait up to ``timeout`` s, SIGKILL the rest."""
    started = [p for p in processes if p.proc is not None]
    for process in started:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(p.group_gone() for p in started):
        time.sleep(0.1)
    for process in started:
        if not process.group_gone():
            process.signal_group(signal.SIGKILL)
    for process in started:
        assert process.proc is not None
        try:
            process.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    # The group's last members may need a moment to disappear after SIGKILL.
    end = time.monotonic() + 5
    while time.monotonic() < end and not all(p.group_gone() for p in started):
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- http


def http_json(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float = 10.0) -> Any:
    """One JSON request with the standard library; raises :class:`StackError` naming the URL on failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        detail = err.read()[:500].decode(errors="replace")
        raise StackError(f"{method} {url} answered HTTP {err.code}: {detail}") from None
    except (OSError, urllib.error.URLError) as err:
        raise StackError(f"{method} {url} failed: {err}") from None
    return json.loads(raw) if raw.strip() else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class AirflowClient:
    """Airflow's public REST API (``/api/v2``) with a JWT from ``/auth/token`` (simple auth manager)."""

    def __init__(self, base_url: str, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._token: str | None = None
        self._token_at = 0.0

    def token(self) -> str:
        # The API's JWTs last much longer than any demo; renew hourly anyway.
        if self._token is None or time.monotonic() - self._token_at > 3600:
            answer = http_json("POST", f"{self.base_url}/auth/token",
                               {"username": self.username, "password": self.password})
            self._token = answer["access_token"]
            self._token_at = time.monotonic()
        return self._token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 15.0) -> Any:
        return http_json(method, f"{self.base_url}/api/v2{path}", body,
                         {"Authorization": f"Bearer {self.token()}"}, timeout=timeout)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def health(self) -> dict[str, Any]:
        return http_json("GET", f"{self.base_url}/api/v2/monitor/health", timeout=5)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances?limit=100")
                    ["task_instances"])

    def is_paused(self, dag_id: str) -> bool:
        return bool(self.get(f"/dags/{dag_id}")["is_paused"])

    def create_backfill(self, dag_id: str, from_date: str, to_date: str, max_active_runs: int = 3,
                        **options: Any) -> dict[str, Any]:
        """What the UI's backfill dialog does: ``POST /api/v2/backfills`` (dates in ISO 8601).

        Refuses a paused DAG: Airflow accepts a backfill for it and then never runs it.
        """
        if self.is_paused(dag_id):
            raise StackError(
                f"DAG {dag_id} is paused: Airflow would accept the backfill and never run it. "
                f"Unpause it first (toggle in the UI, or PATCH /api/v2/dags/{dag_id} is_paused=false)."
            )
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date,
                "max_active_runs": max_active_runs, **options}
        return dict(self.request("POST", "/backfills", body))

    def trigger(self, dag_id: str, logical_date: str | None = None,
                conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Trigger a DAG run (``POST /dags/{dag_id}/dagRuns``)."""
        return dict(self.request("POST", f"/dags/{dag_id}/dagRuns",
                                 {"logical_date": logical_date, "conf": conf or {}}))

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The task instance's extra links, by name."""
        answer = self.get(f"/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/links"
                          f"?map_index={map_index}")
        return dict(answer["extra_links"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task's log for one try, as text (the API serves it as structured events)."""
        answer = self.get(f"/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/logs/"
                          f"{try_number}?map_index={map_index}&full_content=true")
        content = answer.get("content", [])
        if isinstance(content, str):
            return content
        lines = []
        for item in content:
            if isinstance(item, dict):
                lines.append(" ".join(str(v) for k, v in item.items() if k in ("event", "error_detail")))
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def reparse(self, dag_id: str) -> None:
        """Ask the dag-processor to parse the DAG's file now (it re-reads Variables, registers watchers)."""
        file_token = self.get(f"/dags/{dag_id}/details")["file_token"]
        self.request("PUT", f"/parseDagFile/{file_token}")


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# --------------------------------------------------------------------------------------------- stack


@dataclass
class StackConfig:
    """Names and numbers of one local stack; everything has a demo-friendly default."""

    root: Path = REPO / ".demo"
    bucket: str = "sparkflows-landing"
    daily_prefix: str = "landing/daily/"
    events_prefix: str = "landing/events/"
    daily_queue: str = "sparkflows-file-watcher"
    events_queue: str = "sparkflows-file-watcher-events"
    workflow_id: int = 101
    workflow_seconds: float = 8.0
    poll_interval: float = 2.0
    kms_encryption_context: dict[str, str] = field(
        default_factory=lambda: {"purpose": "fire-insights-token"})
    fire_insights_token_ttl: float = 7 * 24 * 3600
    api_port: int = 0
    moto_port: int = 0
    simulator_port: int = 0
    start_timeout: float = 150.0
    extra_airflow_env: dict[str, str] = field(default_factory=dict)


class LocalStack:
    """moto, the Fire Insights simulator and Airflow on loopback, with the file watcher's resources."""

    def __init__(self, config: StackConfig | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.config = config or StackConfig()
        self.echo = echo or (lambda message: None)
        self.root = self.config.root.resolve()
        self.airflow_home = self.root / "airflow"
        self.log_dir = self.root / "logs"
        self.api_port = self.config.api_port or free_port()
        self.moto_port = self.config.moto_port or free_port()
        self.simulator_port = self.config.simulator_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        self.processes: list[ManagedProcess] = []
        self.airflow = AirflowClient(self.api_url)
        self.daily_queue_url = ""
        self.events_queue_url = ""
        self.kms_key_id = ""
        self.timings: dict[str, float] = {}
        self._fire_insights_token = ""
        # One set of secrets for all Airflow processes: each would otherwise make up its own, and the
        # scheduler's task tokens or the dag-processor's encrypted trigger kwargs would not be readable
        # by the others. The database is new on every start, so new secrets are fine.
        self._secrets = {
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API__SECRET_KEY": base64.b64encode(os.urandom(16)).decode(),
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Start every part and create the resources; returns when Airflow has parsed both DAGs."""
        t0 = time.monotonic()
        self._clean_state()
        self._start_moto()
        self._start_simulator()
        self.timings["moto_and_simulator"] = time.monotonic() - t0
        self._create_aws_resources()
        self.timings["aws_resources"] = time.monotonic() - t0
        self._bootstrap_airflow()
        self.timings["airflow_db"] = time.monotonic() - t0
        self._start_airflow()
        self.timings["airflow_ready"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every process group this stack started: Airflow first, then what it used; safe twice."""
        airflow = [p for p in self.processes if p.name not in ("moto", "simulator")]
        others = [p for p in self.processes if p not in airflow]
        for group in (airflow, others):
            if group:
                stop_all(group)
            for process in group:
                self.processes.remove(process)

    def check_processes(self) -> None:
        """Raise :class:`StackError` if a part has died."""
        for process in self.processes:
            process.check_alive()

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def _clean_state(self) -> None:
        # moto keeps its state in memory: a new stack must not see DAG runs of batches that no longer exist.
        shutil.rmtree(self.airflow_home, ignore_errors=True)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.airflow_home.mkdir(parents=True)
        self.log_dir.mkdir(parents=True)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, env or self._base_env(), self.log_dir / f"{name}.log").start()
        self.processes.append(process)
        return process

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PYTEST"))}
        # moto accepts any credentials; fixed ones keep boto3 away from real profiles and instance metadata.
        env.update({
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    # -- moto and the simulator --------------------------------------------------------------------

    def _start_moto(self) -> None:
        self.echo(f"starting moto (S3, SQS, KMS) on {self.moto_url}")
        moto = self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(self.moto_port)])
        wait_for(lambda: _answers(f"{self.moto_url}/moto-api/"), 60, f"moto on {self.moto_url}",
                 check=moto.check_alive)

    def _start_simulator(self) -> None:
        from airflow_provider_sparkflows.testing.simulator import TOKEN_ENV_VAR, make_jwt

        self._fire_insights_token = make_jwt("demo", self.config.fire_insights_token_ttl,
                                             secret=base64.b64encode(os.urandom(24)).decode())
        self.echo(f"starting the Fire Insights simulator on {self.simulator_url}")
        spec = f"{self.config.workflow_id}:{self.config.workflow_seconds}:COMPLETED"
        # The token goes through the environment, not the command line that `ps` shows.
        simulator = self._spawn("simulator", [
            sys.executable, "-m", "airflow_provider_sparkflows.testing.simulator", "--host", "127.0.0.1",
            "--port", str(self.simulator_port), "--workflow", spec,
        ], env={**self._base_env(), TOKEN_ENV_VAR: self._fire_insights_token})
        wait_for(lambda: _answers(f"{self.simulator_url}/_sim/health"), 30,
                 f"the simulator on {self.simulator_url}", check=simulator.check_alive)

    def simulator_admin(self, method: str, action: str, body: Any = None) -> Any:
        """Call the simulator's admin API (``/_sim/<action>``), which needs no token."""
        return http_json(method, f"{self.simulator_url}/_sim/{action}", body)

    def executions(self) -> list[dict[str, Any]]:
        """The simulator's record of every execution (with ``program_parameters`` and ``status``)."""
        return list(self.simulator_admin("GET", "executions"))

    def add_workflow(self, workflow_id: int, duration: float = 1.0, outcome: str = "COMPLETED",
                     **options: Any) -> None:
        body = {"workflow_id": workflow_id, "duration": duration, "outcome": outcome, **options}
        self.simulator_admin("POST", "workflows", body)

    # -- AWS resources ---------------------------------------------------------------------------

    def aws(self, service: str) -> Any:
        """A boto3 client on the stack's moto server."""
        import boto3

        return boto3.client(service, endpoint_url=self.moto_url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _create_aws_resources(self) -> None:
        cfg = self.config
        s3, sqs, kms = self.aws("s3"), self.aws("sqs"), self.aws("kms")
        s3.create_bucket(Bucket=cfg.bucket)
        queue_arns: dict[str, str] = {}
        for name in (cfg.daily_queue, cfg.events_queue):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            arn = attributes["QueueArn"]
            # The queue policy a real account needs so that S3 may send to it (moto does not enforce it).
            policy = json.dumps(_queue_policy(arn, cfg.bucket))
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
            queue_arns[name] = arn
            if name == cfg.daily_queue:
                self.daily_queue_url = url
            else:
                self.events_queue_url = url
        s3.put_bucket_notification_configuration(
            Bucket=cfg.bucket,
            NotificationConfiguration={"QueueConfigurations": [
                _marker_notification(queue_arns[cfg.daily_queue], cfg.daily_prefix),
                _marker_notification(queue_arns[cfg.events_queue], cfg.events_prefix),
            ]},
        )
        key = kms.create_key(Description="Fire Insights token (local demo)")["KeyMetadata"]
        self.kms_key_id = key["KeyId"]
        self.echo(f"created s3://{cfg.bucket}, queues {cfg.daily_queue} and {cfg.events_queue}, "
                  f"the bucket's event notifications, and KMS key {self.kms_key_id}")

    def encrypted_token(self) -> str:
        """The Fire Insights token as base64 KMS ciphertext, as stored in the connection."""
        blob = self.aws("kms").encrypt(
            KeyId=self.kms_key_id, Plaintext=self._fire_insights_token.encode(),
            EncryptionContext=self.config.kms_encryption_context,
        )["CiphertextBlob"]
        return base64.b64encode(blob).decode()

    # -- Airflow ---------------------------------------------------------------------------------

    def airflow_env(self) -> dict[str, str]:
        """The environment every Airflow process of the stack runs with."""
        home = self.airflow_home
        env = self._base_env()
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # Parse new files and Variable changes quickly; there are only two DAG files.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        })
        env.update(self._secrets)
        env.update(self.config.extra_airflow_env)
        return env

    def _bootstrap_airflow(self) -> None:
        self.echo(f"preparing Airflow's database under {self.airflow_home}")
        (self.airflow_home / "passwords.json").write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
        spec = {
            "connections": self.connections(),
            "variables": self.variables(),
        }
        spec_path = self.airflow_home / "bootstrap.json"
        spec_path.write_text(json.dumps(spec))
        result = subprocess.run(
            [sys.executable, "-m", "demo._bootstrap", str(spec_path)], env=self.airflow_env(), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180,
        )
        spec_path.unlink()
        (self.log_dir / "bootstrap.log").write_bytes(result.stdout)
        if result.returncode != 0:
            raise StackError("preparing the Airflow database failed:\n"
                             + result.stdout.decode(errors="replace")[-3000:])

    def connections(self) -> dict[str, dict[str, Any]]:
        """The two connections a real installation needs, pointed at moto and the simulator."""
        return {
            "aws_default": {
                "conn_type": "aws",
                "description": "AWS (here: the local moto server)",
                "extra": {"endpoint_url": self.moto_url, "region_name": REGION},
            },
            "fire_insights_default": {
                "conn_type": "fire_insights",
                "description": "Fire Insights (here: the simulator); the token is KMS-encrypted",
                "host": self.simulator_url,
                "extra": {
                    "token_kms_ciphertext": self.encrypted_token(),
                    "kms_encryption_context": self.config.kms_encryption_context,
                    "aws_conn_id": "aws_default",
                    "auth_header": "token",
                },
            },
        }

    def variables(self) -> dict[str, Any]:
        """The Variables read by ``dags/sparkflows_file_watcher*.py``."""
        cfg = self.config
        return {
            DAILY_DAG_ID: {
                "sqs_queue_url": self.daily_queue_url,
                "bucket": cfg.bucket,
                "prefix": cfg.daily_prefix,
                "workflow_id": cfg.workflow_id,
                "poll_interval": cfg.poll_interval,
                "wait_time_seconds": 5,
                "poke_interval": 1,
                "retries": 2,
                "retry_delay": 2,
            },
            EVENTS_DAG_ID: {
                "sqs_queue_url": self.events_queue_url,
                "bucket": cfg.bucket,
                "prefix": cfg.events_prefix,
                "workflow_id": cfg.workflow_id,
                "poll_interval": cfg.poll_interval,
                "wait_time_seconds": 5,
                "poke_interval": 1,
                "retries": 2,
                "retry_delay": 2,
            },
        }

    def _start_airflow(self) -> None:
        env = self.airflow_env()
        airflow = [sys.executable, "-m", "airflow"]
        self.echo(f"starting Airflow (api-server on {self.api_url}, scheduler, dag-processor, triggerer)")
        started = [
            self._spawn("api-server", [*airflow, "api-server", "--host", "127.0.0.1",
                                       "--port", str(self.api_port), "--workers", "1"], env),
            self._spawn("scheduler", [*airflow, "scheduler"], env),
            self._spawn("dag-processor", [*airflow, "dag-processor"], env),
            self._spawn("triggerer", [*airflow, "triggerer"], env),
        ]

        def check() -> None:
            for process in started:
                process.check_alive()

        timeout = self.config.start_timeout
        wait_for(self._all_healthy, timeout, "Airflow's components to report healthy", 0.5, check)
        self.timings["airflow_healthy"] = time.monotonic()
        wait_for(self._dags_parsed, timeout, f"Airflow to parse {', '.join(DAG_IDS)}", 0.5, check)

    def _all_healthy(self) -> bool:
        try:
            health = self.airflow.health()
        except StackError:
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def _dags_parsed(self) -> bool:
        try:
            return all(self.airflow.get(f"/dags/{dag_id}") for dag_id in DAG_IDS)
        except StackError:
            return False

    # -- what the demo and the tests do with it ----------------------------------------------------

    def deferral_seen(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """Whether the scheduler has processed the exit of the worker that deferred this task.

        Until then a trigger event that resumes the task races with that stale "success" of the
        worker, and Airflow 3.3 may fail the task (apache/airflow#67287); the demo and the tests wait
        for this before writing the marker a deferred sensor waits for. Read from the scheduler's log:
        the REST API does not show it.
        """
        needle = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
        try:
            text = (self.log_dir / "scheduler.log").read_text(errors="replace")
        except OSError:
            return False
        return any(needle in line and "state=deferred" in line for line in text.splitlines())

    def upload_batch(self, prefix: str, parts: int = 3, marker: str = "_SUCCESS") -> str:
        """Write ``parts`` part files under ``prefix`` and then the marker; returns the batch URI."""
        s3 = self.aws("s3")
        folder = prefix if prefix.endswith("/") else prefix + "/"
        for index in range(parts):
            s3.put_object(Bucket=self.config.bucket, Key=f"{folder}part-{index:05d}.csv",
                          Body=f"id,value\n{index},{index * 10}\n".encode())
        s3.put_object(Bucket=self.config.bucket, Key=f"{folder}{marker}", Body=b"")
        return f"s3://{self.config.bucket}/{folder}"

    def summary_lines(self) -> Iterable[str]:
        yield f"Airflow UI:     {self.api_url}  (login {ADMIN_USER} / {ADMIN_PASSWORD})"
        yield f"Fire Insights:  {self.simulator_url}  (the simulator; its record: /_sim/executions)"
        yield f"moto (AWS):     {self.moto_url}  (bucket {self.config.bucket})"
        yield f"logs:           {self.log_dir}"


def _marker_notification(queue_arn: str, prefix: str) -> dict[str, Any]:
    return {
        "Id": f"success-markers-{prefix.strip('/').replace('/', '-')}",
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [
            {"Name": "prefix", "Value": prefix},
            {"Name": "suffix", "Value": "_SUCCESS"},
        ]}},
    }


def _queue_policy(queue_arn: str, bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowS3SuccessMarkers",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
        }],
    }
