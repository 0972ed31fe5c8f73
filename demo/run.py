"""``make demo``: the S3 file watcher on a real local Airflow, from ``_SUCCESS`` marker to Fire Insights run.

Starts :class:`demo.stack.LocalStack` (moto, the Fire Insights simulator, Airflow), unpauses both
file-watcher DAGs, writes one batch of part files and then its ``_SUCCESS`` marker for each of them,
and shows what happens as it happens: the DAG runs, the sensor and the watcher picking the batches up,
and each workflow execution going STARTING -> RUNNING -> COMPLETED. Then it prints a summary and stays
up until Ctrl-C, still reporting, so that batches dropped by hand show up too.

    python -m demo.run            # stays up; Ctrl-C stops every process it started
    python -m demo.run --once     # summary, then exit: 0 if every workflow COMPLETED, 1 otherwise
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from demo.stack import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DAILY_DAG_ID,
    EVENTS_DAG_ID,
    LocalStack,
    StackConfig,
    StackError,
    free_port,
    wait_for,
)

FINAL_RUN_STATES = {"success", "failed"}
FINAL_EXECUTION_STATUSES = {"COMPLETED", "FAILED", "KILLED", "STOPPED", "TIMEOUT", "SKIPPED"}


def preferred_port(port: int) -> int:
    """``port`` if it is free on loopback, else any free port."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


@dataclass
class Batch:
    """One batch the demo wrote, and what became of it."""

    dag_id: str
    uri: str
    marker_written_at: float
    execution: dict[str, Any] | None = None
    run_id: str | None = None
    run_state: str | None = None

    @property
    def request_latency(self) -> float | None:
        """Seconds from the marker's upload to the workflow's run request reaching Fire Insights."""
        if self.execution is None:
            return None
        return float(self.execution["created"]) - self.marker_written_at


@dataclass
class Progress:
    """Polls Airflow's REST API and the simulator's record; prints every change once."""

    stack: LocalStack
    t0: float
    seen: dict[str, str] = field(default_factory=dict)
    #: (dag_id, run_id, run state) by the datapath a workflow task ran on, from its rendered parameters.
    runs_by_datapath: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def say(self, message: str) -> None:
        print(f"[{time.time() - self.t0:6.1f}s] {message}", flush=True)

    def _changed(self, key: str, value: str) -> bool:
        if self.seen.get(key) == value:
            return False
        self.seen[key] = value
        return True

    def poll(self) -> None:
        airflow = self.stack.airflow
        for dag_id in (DAILY_DAG_ID, EVENTS_DAG_ID):
            run_states: dict[str, str] = {}
            for run in airflow.dag_runs(dag_id):
                run_id = run["dag_run_id"]
                run_states[run_id] = run["state"]
                if self._changed(f"run:{dag_id}:{run_id}", run["state"]):
                    self.say(f"{dag_id}: run {run_id} is {run['state']}")
            tis = airflow.get(f"/dags/{dag_id}/dagRuns/~/taskInstances?limit=200")["task_instances"]
            for ti in tis:
                parameters = (ti.get("rendered_fields") or {}).get("parameters")
                if isinstance(parameters, dict) and "datapath" in parameters:
                    run_id = ti["dag_run_id"]
                    run_state = run_states.get(run_id, "")
                    self.runs_by_datapath[parameters["datapath"]] = (dag_id, run_id, run_state)
                index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
                state = ti["state"]
                if state is None:  # not scheduled yet (or the placeholder of a task still to be mapped)
                    continue
                if self._changed(f"ti:{dag_id}:{ti['dag_run_id']}:{ti['task_id']}{index}", state):
                    self.say(f"{dag_id}: {ti['task_id']}{index} is {state}{_explain(ti['task_id'], state)}")
                    if state == "success" and ti["task_id"] in BATCH_TASKS:
                        self._show_batches(dag_id, ti)
        for execution in self.stack.executions():
            if self._changed(f"execution:{execution['id']}", execution["status"]):
                self.say(f"Fire Insights execution {execution['id']} of workflow {execution['workflow_id']} "
                         f"({execution['program_parameters']}): {execution['status']}")


    def _show_batches(self, dag_id: str, ti: dict[str, Any]) -> None:
        """Say which batches the sensor or the watcher handed on (the task's XCom)."""
        path = (f"/dags/{dag_id}/dagRuns/{quote(ti['dag_run_id'], safe='')}/taskInstances/"
                f"{ti['task_id']}/xcomEntries/return_value")
        try:
            batches = self.stack.airflow.get(path)["value"]
        except StackError:
            return
        for batch in batches if isinstance(batches, list) else []:
            how = (f"from SQS message {batch['message_id']}" if batch.get("message_id")
                   else "found in S3 (the marker was already there)")
            who = "the sensor" if ti["task_id"] == "wait_for_success_file" else "the asset watcher"
            self.say(f"{dag_id}: {who} picked up {batch['uri']}, {how}")


BATCH_TASKS = ("wait_for_success_file", "triggering_batches")


def _explain(task_id: str, state: str) -> str:
    if state == "up_for_retry":
        return (" (a retry resumes the same batch or execution; a deferred task whose trigger fires within"
                " seconds can hit apache/airflow#67287)")
    if state == "deferred" and task_id == "wait_for_success_file":
        return " (waiting in the triggerer for the S3 event on SQS)"
    if state == "deferred" and task_id == "run_workflow":
        return " (following the execution from the triggerer)"
    return ""


def daily_run_date(stack: LocalStack, timeout: float) -> str:
    """The date of the daily DAG's scheduled run (created on unpause): its folder is ``<prefix><date>/``."""
    runs = wait_for(lambda: stack.airflow.dag_runs(DAILY_DAG_ID), timeout,
                    f"the first scheduled run of {DAILY_DAG_ID}", check=stack.check_processes)
    run = runs[-1]
    return str(run["logical_date"] or run["run_after"])[:10]


def sensor_deferred(stack: LocalStack) -> bool:
    tis = stack.airflow.get(f"/dags/{DAILY_DAG_ID}/dagRuns/~/taskInstances")["task_instances"]
    return any(ti["task_id"] == "wait_for_success_file" and ti["state"] == "deferred" for ti in tis)


def settle(stack: LocalStack, progress: Progress, batches: list[Batch], timeout: float) -> None:
    """Report progress until every batch's workflow and DAG run have ended (or ``timeout``)."""

    def done() -> bool:
        progress.poll()
        executions = stack.executions()
        for batch in batches:
            batch.execution = next(
                (e for e in executions if f"datapath={batch.uri}" in e["program_parameters"]), None)
            _, batch.run_id, batch.run_state = progress.runs_by_datapath.get(batch.uri, ("", None, None))
        return all(
            b.execution is not None and b.execution["status"] in FINAL_EXECUTION_STATUSES
            and b.run_state in FINAL_RUN_STATES for b in batches
        )

    try:
        wait_for(done, timeout, "the workflows to finish", interval=0.5, check=stack.check_processes)
    except StackError as err:
        progress.say(str(err))


def print_summary(stack: LocalStack, batches: list[Batch], started: float, summary_at: float) -> None:
    print()
    print("=" * 100)
    print(f"Summary (stack up in {stack.timings.get('airflow_ready', 0):.0f}s; "
          f"{summary_at - started:.0f}s from start to this summary)")
    for batch in batches:
        execution = batch.execution or {}
        latency = batch.request_latency
        print(f"  {batch.dag_id}")
        print(f"    batch:             {batch.uri}")
        print(f"    DAG run:           {batch.run_id or '-'} ({batch.run_state or 'not started'})")
        if batch.run_id:
            run_url = f"{stack.api_url}/dags/{batch.dag_id}/runs/{quote(batch.run_id, safe='')}"
            print(f"                       {run_url}")
        print(f"    execution:         {execution.get('id', '-')}, "
              f"final status {execution.get('status', '-')}")
        print(f"    _SUCCESS -> run request: {f'{latency:.1f}s' if latency is not None else '-'}")
    for line in stack.summary_lines():
        print(f"  {line}")
    cfg = stack.config
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    print("  Drop another batch by hand (the events DAG runs it at once):")
    print(f"    {python} -m demo.drop_batch --endpoint-url {stack.moto_url} "
          f"s3://{cfg.bucket}/{cfg.events_prefix}my-batch/")
    print(f"  or with the AWS CLI: aws --endpoint-url {stack.moto_url} s3 cp part.csv "
          f"s3://{cfg.bucket}/{cfg.events_prefix}my-batch/ && aws --endpoint-url {stack.moto_url} s3 cp "
          f"/dev/null s3://{cfg.bucket}/{cfg.events_prefix}my-batch/_SUCCESS")
    print("=" * 100, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="print the summary and exit (for CI)")
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="seconds to wait for the workflows after the markers are written")
    parser.add_argument("--root", type=Path, default=Path(".demo"), help="state and logs (default .demo)")
    args = parser.parse_args(argv)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, a closed terminal and `kill` all end here, so the stack is always stopped. SIGINT is set
    # explicitly too: Python leaves it ignored when started in the background by a non-interactive shell.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)

    started = time.time()
    config = StackConfig(
        root=args.root,
        api_port=preferred_port(8080),
        simulator_port=preferred_port(8765),
        moto_port=preferred_port(4566),
    )
    progress_t0 = started
    stack = LocalStack(config, echo=lambda m: print(f"[{time.time() - progress_t0:6.1f}s] {m}", flush=True))
    try:
        stack.start()
        progress = Progress(stack, started)
        progress.say(f"Airflow is up at {stack.api_url} (login {ADMIN_USER} / {ADMIN_PASSWORD}); "
                     f"start-up took {stack.timings['airflow_ready']:.0f}s")
        for dag_id in (DAILY_DAG_ID, EVENTS_DAG_ID):
            # A paused DAG accepts backfills and asset events but runs nothing, and a paused
            # asset-scheduled DAG has no watcher: unpause first.
            stack.airflow.unpause(dag_id)
            progress.say(f"unpaused {dag_id}")
        # Register the events DAG's asset watcher now instead of at its next periodic parse.
        stack.airflow.reparse(EVENTS_DAG_ID)
        day = daily_run_date(stack, 60)
        progress.say(f"{DAILY_DAG_ID} has its scheduled run for {day}: it waits for "
                     f"s3://{config.bucket}/{config.daily_prefix}{day}/_SUCCESS")
        # Write the daily batch once the sensor waits in the triggerer, so that it is the SQS event that
        # completes it (a marker already in S3 would complete it at once: that is how backfills work).
        def sensor_waiting() -> bool:
            progress.poll()
            return sensor_deferred(stack)

        wait_for(sensor_waiting, 90, "the sensor to wait in the triggerer", interval=0.5,
                 check=stack.check_processes)
        run_id = stack.airflow.dag_runs(DAILY_DAG_ID)[-1]["dag_run_id"]
        wait_for(lambda: stack.deferral_seen(DAILY_DAG_ID, run_id, "wait_for_success_file"), 60,
                 "the scheduler to register the deferral", check=stack.check_processes)
        batches: list[Batch] = []
        folders = [
            (DAILY_DAG_ID, f"{config.daily_prefix}{day}/"),
            (EVENTS_DAG_ID, f"{config.events_prefix}batch-{datetime.datetime.now():%Y%m%d-%H%M%S}/"),
        ]
        for dag_id, folder in folders:
            uri = stack.upload_batch(folder, parts=3)
            batches.append(Batch(dag_id=dag_id, uri=uri, marker_written_at=time.time()))
            progress.say(f"wrote 3 part files and then _SUCCESS to {uri} (for {dag_id})")
        settle(stack, progress, batches, args.timeout)
        print_summary(stack, batches, started, time.time())
        ok = all(b.execution is not None and b.execution["status"] == "COMPLETED"
                 and b.run_state == "success" for b in batches)
        if args.once:
            return 0 if ok else 1
        print("Still running; new batches show up below. Ctrl-C stops everything.", flush=True)
        while True:
            stack.check_processes()
            progress.poll()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        # Ctrl-C is how the interactive demo ends; in --once mode it means the check did not finish.
        return 1 if args.once else 0
    except StackError as err:
        print(f"\nThe demo failed: {err}", file=sys.stderr, flush=True)
        print(f"Logs: {stack.log_dir}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the clean-up half-way and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        stack.stop()
        print("Every process the demo started has been stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
