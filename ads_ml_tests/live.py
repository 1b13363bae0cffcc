"""A live ``dagster-webserver`` + ``dagster-daemon`` on a ``DAGSTER_HOME``, driven through GraphQL as the
UI drives it: used by the live-deployment tests and by ``benchmarks/multi_account.py``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

LOCATION = "ads_ml"
REPOSITORY = "__repository__"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """A live webserver + daemon and the GraphQL calls the UI makes."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        bin_dir = Path(sys.executable).parent
        logs = root / "logs"
        logs.mkdir()
        self.processes = [
            subprocess.Popen(
                [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml"],
                cwd=REPO_ROOT, env=env, stdout=open(logs / "webserver.log", "wb"), stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=REPO_ROOT, env=env, stdout=open(logs / "daemon.log", "wb"), stderr=subprocess.STDOUT,
            ),
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def query(self, text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        for attempt in range(4):  # a 5xx while the webserver (re)loads the code location: ask again
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    payload = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == 3:
                    raise
                time.sleep(2)
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.poll() is None, f"{process.args[0]} exited: see {self.root / 'logs'}"
            try:
                data = self.query("{ repositoryOrError(repositorySelector: {repositoryLocationName: \"%s\", "
                                  "repositoryName: \"%s\"}) { __typename } }" % (LOCATION, REPOSITORY))
                if data["repositoryOrError"]["__typename"] == "Repository":
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise AssertionError(f"webserver not ready after {timeout} s")

    def start_sensor(self, name: str) -> str:
        data = self.query(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                 __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
        )["startSensor"]
        assert data["__typename"] == "Sensor", data
        return data["sensorState"]["status"]

    def stop_sensor(self, name: str) -> str:
        sensor = self.query(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                 __typename ... on Sensor { jobOriginId sensorState { selectorId } } } }""",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
        )["sensorOrError"]
        data = self.query(
            """mutation($o: String!, $s: String!) { stopSensor(jobOriginId: $o, jobSelectorId: $s) {
                 __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }""",
            {"o": sensor["jobOriginId"], "s": sensor["sensorState"]["selectorId"]},
        )["stopSensor"]
        assert data["__typename"] == "StopSensorMutationResult", data
        return data["instigationState"]["status"]

    def ticks(self, name: str, limit: int = 200) -> list[dict]:
        """A sensor's ticks as its page lists them: status, the runs launched, and the count of
        materialisations the tick says it requested."""
        return self.query(
            """query($s: SensorSelector!, $n: Int) { sensorOrError(sensorSelector: $s) {
                 ... on Sensor { sensorState { ticks(limit: $n) { status runIds requestedAssetMaterializationCount } } } } }""",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}, "n": limit},
        )["sensorOrError"]["sensorState"]["ticks"]

    def launch(self, job: str, account: str, run_config: dict | None = None) -> str:
        data = self.query(
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            {"p": {
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
                "runConfigData": run_config or {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": account}]},
            }},
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def launch_assets(self, account: str, assets: list[str]) -> str:
        """What the UI's "Materialize" on selected assets of one partition launches."""
        data = self.query(
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            {"p": {
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "__ASSET_JOB",
                             "assetSelection": [{"path": [a]} for a in assets]},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": account}]},
            }},
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def terminate(self, run_id: str, force: bool = False) -> str:
        """The run page's Terminate button; ``force``: "Force termination immediately"."""
        data = self.query(
            """mutation($id: String!, $p: TerminateRunPolicy) { terminateRun(runId: $id, terminatePolicy: $p) {
                 __typename ... on TerminateRunSuccess { run { status } } ... on TerminateRunFailure { message }
                 ... on PythonError { message } } }""",
            {"id": run_id, "p": "MARK_AS_CANCELED_IMMEDIATELY" if force else "SAFE_TERMINATE"},
        )["terminateRun"]
        assert data["__typename"] == "TerminateRunSuccess", data
        return data["run"]["status"]

    def add_partition(self, key: str, partitions: str = "ad_account") -> None:
        """The asset page's "Add partition"."""
        data = self.query(
            """mutation($r: RepositorySelector!, $p: String!, $k: String!) {
                 addDynamicPartition(repositorySelector: $r, partitionsDefName: $p, partitionKey: $k) {
                 __typename ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"r": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}, "p": partitions, "k": key},
        )["addDynamicPartition"]
        assert data["__typename"] == "AddDynamicPartitionSuccess", data

    def status(self, run_id: str) -> str:
        return self.query("""query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }""",
                          {"id": run_id})["runOrError"]["status"]

    def launch_backfill(self, accounts: str | list[str], assets: list[str]) -> str:
        data = self.query(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"p": {"partitionNames": [accounts] if isinstance(accounts, str) else accounts, "assetSelection": [{"path": [a]} for a in assets]}},
        )["launchPartitionBackfill"]
        assert data["__typename"] == "LaunchBackfillSuccess", data
        return data["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        data = self.query(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status } } }""", {"id": backfill_id},
        )["partitionBackfillOrError"]
        return data["status"]

    def runs(self) -> list[dict]:
        data = self.query(
            """{ runsOrError(limit: 500) { ... on Runs { results {
                 runId jobName status startTime endTime tags { key value } } } } }"""
        )["runsOrError"]["results"]
        return [
            {"run_id": r["runId"], "job": r["jobName"], "status": r["status"], "start": r["startTime"], "end": r["endTime"],
             "tags": {t["key"]: t["value"] for t in r["tags"]}}
            for r in data
        ]

    def wait_for(self, predicate, what: str, timeout: float = 420):  # noqa: ANN001, ANN201
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.poll() is None, f"{process.args[0]} exited: see {self.root / 'logs'}"
            value = predicate()
            if value:
                return value
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; runs: {self.runs()}")
