"""Monitoring probes against real HTTP servers on loopback, alerting through a real Engine
over a SQLite ledger.

Two stand-ins run on 127.0.0.1, no mocks: a threaded storefront whose latency and status
the test changes while it runs, and a fake Prometheus that answers `/api/v1/query_range`
with the JSON documented at https://prometheus.io/docs/prometheus/latest/querying/api/
(`status`, `data.resultType: matrix`, `values: [[unix_ts, "value"], ...]`, and the error
envelope `errorType`/`error`). Prometheus itself is not installed here, so the fake is
what the Prometheus probe is tested against.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.probes import (
    STATE_FILE,
    Monitors,
    ProbeStates,
    check,
    cmd_probe,
    due_probes,
    load_monitors,
    sweep,
)
from storeops.errors import ConfigError, DefinitionError
from storeops.runtime import Engine
from storeops.settings import Settings
from tests.conftest import FIXTURES, VALID

# ---------------------------------------------------------------- loopback servers


class Storefront(ThreadingHTTPServer):
    """Answers every GET after `delay` seconds with `status`; both may change at any time."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StorefrontHandler)
        self.delay = 0.0
        self.status = 200
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _StorefrontHandler(BaseHTTPRequestHandler):
    server: Storefront

    def do_GET(self) -> None:
        self.server.hits += 1
        time.sleep(self.server.delay)
        body = b"<html><body>storefront</body></html>"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The probe may have given up waiting (its timeout): what that test wanted.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakePrometheus(ThreadingHTTPServer):
    """The query_range endpoint of the Prometheus HTTP API, answering scripted series.

    `series[query]` is a list of series, each a list of values (numbers or the strings
    Prometheus writes, such as "NaN"); the last value is stamped `end`, earlier ones one
    `step` apart. A query in `errors` gets the error envelope with that (status, type,
    message); any other query an empty matrix, as Prometheus gives for no series."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PrometheusHandler)
        self.series: dict[str, list[list[float | str]]] = {}
        self.errors: dict[str, tuple[int, str, str]] = {}
        self.requests: list[dict[str, str]] = []
        #: When set, the Authorization header a request must carry (as behind a proxy).
        self.authorization: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PrometheusHandler(BaseHTTPRequestHandler):
    server: FakePrometheus

    def do_GET(self) -> None:
        wanted = self.server.authorization
        if wanted is not None and self.headers.get("Authorization") != wanted:
            body = b"401 Unauthorized\n"  # the proxy's answer: not Prometheus JSON
            self.send_response(401)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        parts = urlsplit(self.path)
        if parts.path != "/api/v1/query_range":
            self._answer(404, {"status": "error", "errorType": "not_found", "error": "no route"})
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append(params)
        missing = [p for p in ("query", "start", "end", "step") if p not in params]
        if missing:
            error = f'invalid parameter "{missing[0]}": missing'
            self._answer(400, {"status": "error", "errorType": "bad_data", "error": error})
            return
        try:
            start, end, step = (float(params[p]) for p in ("start", "end", "step"))
        except ValueError:
            self._answer(400, {"status": "error", "errorType": "bad_data", "error": "bad time"})
            return
        if end < start or step <= 0:
            error = "end timestamp must not be before start time"
            self._answer(400, {"status": "error", "errorType": "bad_data", "error": error})
            return
        query = params["query"]
        if query in self.server.errors:
            status, kind, message = self.server.errors[query]
            self._answer(status, {"status": "error", "errorType": kind, "error": message})
            return
        result = []
        for number, values in enumerate(self.server.series.get(query, [])):
            stamps = [end - step * (len(values) - 1 - i) for i in range(len(values))]
            result.append(
                {
                    "metric": {"instance": f"web-{number}"},
                    "values": [[ts, str(v)] for ts, v in zip(stamps, values, strict=True)],
                }
            )
        self._answer(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture
def storefront() -> Iterator[Storefront]:
    yield from _serve(Storefront())


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    yield from _serve(FakePrometheus())


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ---------------------------------------------------------------- helpers


def write_monitors(folder: Path, text: str) -> Path:
    path = folder / "monitors.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def monitors_from(folder: Path, text: str) -> Monitors:
    monitors, problems = load_monitors(write_monitors(folder, text), sops_dir=VALID)
    assert monitors is not None, "\n".join(map(str, problems))
    assert [] == problems
    return monitors


def storefront_yaml(url: str, *, clear_after: int = 2, samples: int = 2) -> str:
    return f"""\
probes:
  storefront:
    kind: http
    url: {url}
    samples: {samples}
    timeout: 2s
    every: 1m
    breach: {{p95_latency_ms: {{above: 150}}, error_rate: {{above: 0.2}}}}
    clear_after: {clear_after}
    alert: {{key: storefront-slow, sop: incident, severity: sev2}}
"""


def prometheus_yaml(url: str, breach: str, *, no_data: str = "ok") -> str:
    return f"""\
probes:
  checkout_errors:
    kind: prometheus
    url: {url}
    query: sum(rate(http_requests_total{{status=~"5.."}}[5m]))
    window: 15m
    step: 1m
    timeout: 2s
    no_data: {no_data}
    breach: {breach}
    clear_after: 3
    alert: {{key: checkout-5xx, sop: incident, severity: sev1}}
"""


QUERY = 'sum(rate(http_requests_total{status=~"5.."}[5m]))'


def event_types(engine: Engine, run_id: str) -> list[str]:
    return [e.type for e in engine.ledger.events(run_id)]


# ---------------------------------------------------------------- HTTP probe


def test_healthy_storefront_raises_no_alert(
    tmp_path: Path, storefront: Storefront, make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine()
    monitors = monitors_from(tmp_path, storefront_yaml(storefront.url))
    state = ProbeStates.at_home(tmp_path / "home")

    [outcome] = sweep(engine, monitors, state)

    assert outcome.result.ok
    assert "none" == outcome.alert
    assert 0.0 == outcome.result.measured["error_rate"]
    assert 2 == storefront.hits
    assert [] == engine.ledger.runs(sop_id="incident")


def test_breach_starts_the_runbook_once_and_the_all_clear_follows_recovery(
    tmp_path: Path, storefront: Storefront, make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine()
    monitors = monitors_from(tmp_path, storefront_yaml(storefront.url, clear_after=2))
    home = tmp_path / "home"
    state = ProbeStates.at_home(home)

    storefront.delay = 0.2
    [first] = sweep(engine, monitors, state)
    [second] = sweep(engine, monitors, state)

    assert first.result.breached
    assert "raised" == first.alert
    assert first.result.measured["p95_latency_ms"] > 150
    assert any(r.startswith("p95_latency_ms") for r in first.result.reasons)
    assert ("repeated", first.run_id) == (second.alert, second.run_id)
    [run] = engine.ledger.runs(sop_id="incident")
    assert (first.run_id, "storefront-slow") == (run.run_id, run.business_key)
    started = engine.ledger.events(run.run_id)[0]
    assert {"alert_key": "storefront-slow", "severity": "sev2"}.items() <= started.data[
        "params"
    ].items()
    assert "probe storefront: p95_latency_ms" in started.data["params"]["summary"]
    assert 1 == event_types(engine, run.run_id).count("alert.repeated")

    storefront.delay = 0.0
    [third] = sweep(engine, monitors, state)
    assert ("recovering", 1, first.run_id) == (third.alert, third.healthy_in_run, third.run_id)
    assert "alert.cleared" not in event_types(engine, run.run_id)

    # Another process (the runner, the next CLI call) reads the counters from the file.
    on_disk = json.loads((home / STATE_FILE).read_text())
    assert 1 == on_disk["probes"]["storefront"]["healthy_in_run"]
    [fourth] = sweep(engine, monitors, ProbeStates.at_home(home))
    assert ("cleared", 2) == (fourth.alert, fourth.healthy_in_run)

    cleared = [e for e in engine.ledger.events(run.run_id) if e.type == "alert.cleared"]
    assert 1 == len(cleared)
    assert "storefront-slow" == cleared[0].data["key"]
    assert 0.0 == cleared[0].data["measured"]["error_rate"]
    assert "healthy for 2 consecutive checks" in cleared[0].data["summary"]

    [fifth] = sweep(engine, monitors, state)
    assert "cleared_before" == fifth.alert
    assert 1 == event_types(engine, run.run_id).count("alert.cleared")
    assert 1 == len(engine.ledger.runs(sop_id="incident"))


def test_a_breach_during_recovery_restarts_the_count(
    tmp_path: Path, storefront: Storefront, make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine()
    monitors = monitors_from(tmp_path, storefront_yaml(storefront.url, clear_after=2, samples=1))
    state = ProbeStates.at_home(tmp_path / "home")

    storefront.status = 503
    assert ["raised"] == [o.alert for o in sweep(engine, monitors, state)]
    storefront.status = 200
    assert ["recovering"] == [o.alert for o in sweep(engine, monitors, state)]
    storefront.status = 500
    assert ["repeated"] == [o.alert for o in sweep(engine, monitors, state)]
    storefront.status = 200
    outcomes = [sweep(engine, monitors, state)[0] for _ in range(2)]

    assert [("recovering", 1), ("cleared", 2)] == [(o.alert, o.healthy_in_run) for o in outcomes]


def test_error_statuses_count_as_errors(tmp_path: Path, storefront: Storefront) -> None:
    monitors = monitors_from(tmp_path, storefront_yaml(storefront.url, samples=3))
    storefront.status = 503

    result = check(monitors.probes["storefront"])

    assert result.breached
    assert 1.0 == result.measured["error_rate"]
    assert "error_rate 1 is above 0.2" in result.reasons
    assert any("3/3 samples failed (HTTP 503 ×3)" in r for r in result.reasons)


def test_a_timeout_is_an_error_sample_counted_at_the_timeout(
    tmp_path: Path, storefront: Storefront
) -> None:
    text = storefront_yaml(storefront.url, samples=2).replace("timeout: 2s", "timeout: 100ms")
    monitors = monitors_from(tmp_path, text)
    storefront.delay = 0.5

    result = check(monitors.probes["storefront"])

    assert result.breached
    assert 1.0 == result.measured["error_rate"]
    assert 100.0 == result.measured["p95_latency_ms"]
    assert any("ReadTimeout after 0.1s ×2" in r for r in result.reasons)


def test_an_unreachable_url_is_a_breach_with_a_reason_not_a_crash(
    tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    url = closed_port_url()
    engine = make_engine()
    monitors = monitors_from(tmp_path, storefront_yaml(url))

    [outcome] = sweep(engine, monitors, ProbeStates.at_home(tmp_path / "home"))

    assert outcome.result.breached
    assert "raised" == outcome.alert
    assert "p95_latency_ms" not in outcome.result.measured
    reason = outcome.result.reasons[-1]
    assert reason.startswith(f"no good answer from {url}: 2/2 samples failed (ConnectError")
    assert "p95_latency_ms=n/a (above 150: not measured)" in outcome.line(
        monitors.probes["storefront"]
    )


# ---------------------------------------------------------------- Prometheus probe


@pytest.mark.parametrize(
    ("breach", "expected_ok", "value"),
    [
        ("{last: {above: 5}}", True, 2.0),
        ("{max: {above: 5}}", False, 9.0),
        ("{avg: {above: 5}}", True, 3.6),
        ("{avg: {above: 3}}", False, 3.6),
        ("{min: {below: 1.5}}", False, 1.0),
        ("{last: {above: 5}, max: {above: 10}}", True, 2.0),
    ],
    ids=["last-ok", "max-breach", "avg-ok", "avg-breach", "min-below", "two-ok"],
)
def test_prometheus_reduces_the_range(
    tmp_path: Path, prometheus: FakePrometheus, breach: str, expected_ok: bool, value: float
) -> None:
    prometheus.series[QUERY] = [[1, 9, 2, 4, "NaN", 2]]  # NaN samples are skipped
    monitors = monitors_from(tmp_path, prometheus_yaml(prometheus.url, breach))

    result = check(monitors.probes["checkout_errors"], now=1_800_000_000.0)

    assert expected_ok == result.ok
    assert value == result.readings[0].value
    assert {"series": 1, "last": 2, "max": 9, "min": 1, "avg": 3.6}.items() <= (
        result.measured.items()
    )
    [sent] = prometheus.requests
    expected = {"query": QUERY, "start": "1799999100.000", "end": "1800000000.000", "step": "60"}
    assert expected == sent


def test_a_probe_sends_its_authorization_from_the_environment(
    tmp_path: Path, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus.authorization = "Bearer s3cret-token"
    prometheus.series[QUERY] = [[0.0, 0.0]]
    text = prometheus_yaml(prometheus.url, "{last: {above: 5}}").replace(
        "    timeout: 2s\n", "    timeout: 2s\n    auth_env: STOREOPS_PROM_AUTH\n"
    )
    probe = monitors_from(tmp_path, text).probes["checkout_errors"]
    unset = check(probe, now=1_800_000_000.0)
    assert not unset.ok
    assert "STOREOPS_PROM_AUTH, which is not set" in unset.reasons[0]
    monkeypatch.setenv("STOREOPS_PROM_AUTH", "Bearer wrong-token")
    refused = check(probe, now=1_800_000_000.0)
    assert not refused.ok
    assert "HTTP 401" in refused.reasons[0]
    assert "wrong-token" not in str(refused.reasons)
    monkeypatch.setenv("STOREOPS_PROM_AUTH", "Bearer s3cret-token")
    assert check(probe, now=1_800_000_000.0).ok


def test_prometheus_judges_the_worst_series(tmp_path: Path, prometheus: FakePrometheus) -> None:
    prometheus.series[QUERY] = [[1, 1, 1], [0, 7, 8], [0.5]]
    monitors = monitors_from(tmp_path, prometheus_yaml(prometheus.url, "{last: {above: 5}}"))

    result = check(monitors.probes["checkout_errors"])

    assert result.breached
    assert ["last 8 is above 5"] == result.reasons
    assert 3 == result.measured["series"]


def test_prometheus_breach_raises_the_alert(
    tmp_path: Path, prometheus: FakePrometheus, make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine()
    prometheus.series[QUERY] = [[0.1, 6.5]]
    monitors = monitors_from(tmp_path, prometheus_yaml(prometheus.url, "{last: {above: 5}}"))

    [outcome] = sweep(engine, monitors, ProbeStates.at_home(tmp_path / "home"))

    assert "raised" == outcome.alert
    assert outcome.run_id is not None
    started = engine.ledger.events(outcome.run_id)[0].data
    assert ("checkout-5xx", "sev1") == (
        started["params"]["alert_key"],
        started["params"]["severity"],
    )
    assert "probe checkout_errors: last 6.5 is above 5" == started["params"]["summary"]


@pytest.mark.parametrize(("no_data", "expected_ok"), [("ok", True), ("breach", False)])
def test_prometheus_without_data(
    tmp_path: Path, prometheus: FakePrometheus, no_data: str, expected_ok: bool
) -> None:
    prometheus.series[QUERY] = [["NaN", "NaN"]]
    text = prometheus_yaml(prometheus.url, "{last: {above: 5}}", no_data=no_data)
    monitors = monitors_from(tmp_path, text)

    result = check(monitors.probes["checkout_errors"])

    assert expected_ok == result.ok
    assert 0 == result.measured["series"]
    said = result.notes if expected_ok else result.reasons
    assert ["no data: the query returned no samples in the last 900s"] == said


def test_prometheus_error_answer_is_a_breach_with_its_message(
    tmp_path: Path, prometheus: FakePrometheus
) -> None:
    prometheus.errors[QUERY] = (422, "execution", "query processing would load too many samples")
    monitors = monitors_from(tmp_path, prometheus_yaml(prometheus.url, "{max: {above: 5}}"))

    result = check(monitors.probes["checkout_errors"])

    assert result.breached
    assert [
        "Prometheus refused the query (HTTP 422, execution): "
        "query processing would load too many samples"
    ] == result.reasons


def test_prometheus_wrong_url_and_unreachable(tmp_path: Path, prometheus: FakePrometheus) -> None:
    text = prometheus_yaml(prometheus.url + "/grafana", "{max: {above: 5}}")
    wrong = check(monitors_from(tmp_path, text).probes["checkout_errors"])
    url = closed_port_url().rstrip("/")
    gone = check(
        monitors_from(tmp_path, prometheus_yaml(url, "{max: {above: 5}}")).probes["checkout_errors"]
    )

    assert wrong.breached
    assert ["Prometheus refused the query (HTTP 404, not_found): no route"] == wrong.reasons
    assert gone.breached
    assert gone.reasons[0].startswith(f"Prometheus at {url} is unreachable: ConnectError")


# ---------------------------------------------------------------- the monitors file

BAD = """\
probes:
  storefront:
    kind: http
    url: ftp://example.com/
    samples: 0
    timeout: fast
    breach: {p95_latency: {above: 1500}}
    alert: {key: storefront-slow, sop: incident}
  checkout:
    kind: prometheus
    url: http://127.0.0.1:9090
    breach: {last: {over: 5}}
    alert: {sop: incident}
  grpc_thing:
    kind: grpc
  nokind:
    url: http://127.0.0.1/
  dup:
    kind: http
    url: http://127.0.0.1/
    breach: {}
    alert: {key: a, sop: incident}
    alert: {key: b, sop: incident}
"""

BAD_EXPECTED = [
    "4:10: error[SOP102]: probes.storefront.url: expected an http:// or https:// URL, "
    "found 'ftp://example.com/'",
    "5:14: error[SOP102]: probes.storefront.samples: Input should be greater than or equal "
    "to 1, found 0",
    "6:14: error[SOP102]: probes.storefront.timeout: expected a duration such as 90s, 15m, "
    "2h30m, 1d, 500ms or ISO 8601 PT15M, found 'fast'",
    "7:14: error[SOP101]: unknown key 'p95_latency' in probes.storefront.breach; allowed: "
    "p50_latency_ms, p90_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms, "
    "avg_latency_ms, error_rate; did you mean 'p95_latency_ms'?",
    "9:3: error[SOP104]: missing required key 'query' in probes.checkout",
    "12:21: error[SOP101]: unknown key 'over' in probes.checkout.breach.last; allowed: above, "
    "below; did you mean 'above'?",
    "13:5: error[SOP104]: missing required key 'key' in probes.checkout.alert",
    "15:11: error[SOP102]: probes.grpc_thing.kind: unknown probe kind 'grpc'; allowed: http, "
    "prometheus",
    "16:3: error[SOP104]: missing required key 'kind' in probes.nokind; one of http, prometheus",
    "21:13: error[SOP102]: probes.dup.breach: breach needs at least one of p50_latency_ms, "
    "p90_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms, avg_latency_ms, "
    "error_rate",
    "23:5: error[SOP003]: duplicate key 'alert', first written at line 22; remove or rename "
    "one of them (the first is used)",
]


def test_a_bad_monitors_file_reports_every_problem_with_its_position(tmp_path: Path) -> None:
    path = write_monitors(tmp_path, BAD)

    monitors, problems = load_monitors(path)

    assert monitors is None
    assert [f"{path}:{line}" for line in BAD_EXPECTED] == [str(d) for d in problems]


def test_runbooks_must_exist_and_alert_keys_must_be_unique(tmp_path: Path) -> None:
    text = """\
probes:
  one:
    kind: http
    url: http://127.0.0.1/
    breach: {error_rate: {above: 0}}
    alert: {key: same, sop: incident}
  two:
    kind: http
    url: http://127.0.0.1/
    breach: {error_rate: {above: 0}}
    alert: {key: same, sop: incidnet}
  three:
    kind: http
    url: http://127.0.0.1/
    breach: {error_rate: {above: 0}}
    alert: {key: same, sop: incident}
"""
    path = write_monitors(tmp_path, text)

    monitors, problems = load_monitors(path, sops_dir=VALID)

    assert monitors is None
    assert [(11, 29, "SOP102"), (16, 18, "SOP102")] == [
        (d.line, d.column, d.code) for d in problems
    ]
    assert "no runbook 'incidnet'" in problems[0].message
    assert "did you mean 'incident'?" in problems[0].message
    assert "also raised by probe 'one'" in problems[1].message


def test_an_empty_or_odd_monitors_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- probes\n", encoding="utf-8")

    assert (None, ["the file is empty; a monitors file starts with `probes:`"]) == (
        load_monitors(empty)[0],
        [d.message for d in load_monitors(empty)[1]],
    )
    assert "the top level is a list" in load_monitors(listed)[1][0].message


# ---------------------------------------------------------------- scheduling and the CLI


def test_due_probes_honours_every(
    tmp_path: Path, storefront: Storefront, make_engine: Callable[..., Engine]
) -> None:
    text = storefront_yaml(storefront.url, samples=1) + (
        "  hourly:\n"
        "    kind: http\n"
        f"    url: {storefront.url}\n"
        "    samples: 1\n"
        "    every: 1h\n"
        "    breach: {error_rate: {above: 0}}\n"
        "    alert: {key: hourly, sop: incident}\n"
    )
    monitors = monitors_from(tmp_path, text)
    state = ProbeStates.at_home(tmp_path / "home")
    assert ["storefront", "hourly"] == due_probes(monitors, state, 1000.0)

    sweep(make_engine(), monitors, state, now=1000.0)

    assert [] == due_probes(monitors, state, 1059.0)
    assert ["storefront"] == due_probes(monitors, state, 1060.0)
    assert ["storefront", "hourly"] == due_probes(
        monitors, ProbeStates.at_home(tmp_path / "home"), 4600.0
    )


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=str(tmp_path / "home"),
        ledger=str(tmp_path / "home" / "ledger.db"),
        sops=str(VALID),
        templates=str(FIXTURES / "templates"),
        roster=str(VALID / "team.yaml"),
    )


def test_cmd_probe_prints_one_line_per_probe(
    tmp_path: Path,
    storefront: Storefront,
    prometheus: FakePrometheus,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = storefront_yaml(storefront.url) + prometheus_yaml(
        prometheus.url, "{last: {above: 5}}"
    ).removeprefix("probes:\n")
    path = write_monitors(tmp_path, text)
    prometheus.series[QUERY] = [[9.0]]
    cfg = _settings(tmp_path)

    code = cmd_probe(argparse.Namespace(name=None, monitors=str(path), dry_run=False), cfg)
    lines = capsys.readouterr().out.splitlines()

    assert 0 == code
    assert 2 == len(lines)
    assert lines[0].startswith("storefront: ok: p95_latency_ms=")
    assert "(above 150: ok), error_rate=0 (above 0.2: ok)" in lines[0]
    assert lines[1].startswith(
        "checkout_errors: BREACH: last=9 (above 5: BREACH); alert checkout-5xx raised "
        "(incident run incident-checkout-5xx-"
    )

    code = cmd_probe(
        argparse.Namespace(name="checkout_errors", monitors=str(path), dry_run=False), cfg
    )
    again = capsys.readouterr().out.splitlines()
    assert 0 == code
    assert 1 == len(again)
    assert "alert checkout-5xx repeated" in again[0]

    dry = cmd_probe(argparse.Namespace(name="storefront", monitors=str(path), dry_run=True), cfg)
    assert 0 == dry
    assert capsys.readouterr().out.rstrip().endswith("; not alerting (dry run)")


def test_cmd_probe_refuses_bad_input(tmp_path: Path) -> None:
    cfg = _settings(tmp_path)
    bad = write_monitors(tmp_path, BAD)
    with pytest.raises(DefinitionError) as caught:
        cmd_probe(argparse.Namespace(name=None, monitors=str(bad), dry_run=False), cfg)
    assert len(BAD_EXPECTED) == len(caught.value.diagnostics)

    good = write_monitors(tmp_path, storefront_yaml("http://127.0.0.1:9/"))
    with pytest.raises(ConfigError, match=r"no probe 'storefrnt'.*did you mean 'storefront'"):
        cmd_probe(argparse.Namespace(name="storefrnt", monitors=str(good), dry_run=False), cfg)
    with pytest.raises(ConfigError, match="no monitors file at"):
        cmd_probe(
            argparse.Namespace(name=None, monitors=str(tmp_path / "nope.yaml"), dry_run=False),
            cfg,
        )


def test_disabled_probes_are_validated_but_not_scheduled(tmp_path: Path) -> None:
    path = tmp_path / "monitors.yaml"
    path.write_text(
        """
probes:
  shop:
    kind: http
    url: http://127.0.0.1:9/
    enabled: false
    breach: {error_rate: {above: 0.5}}
    alert: {key: shop-down, sop: incident}
""",
        encoding="utf-8",
    )
    monitors, problems = load_monitors(path)
    assert [] == problems
    assert monitors is not None
    assert not monitors.probes["shop"].enabled
    assert [] == due_probes(monitors, ProbeStates.at_home(tmp_path), 1e9)
