"""Monitoring probes: measure a storefront or a Prometheus query, raise the alert that starts
an incident runbook on a breach, and record the all-clear once the probe is healthy again.

Edge module: httpx (sync; a timeout on every request), YAML through storeops.yamlsource and
a small JSON state file under STOREOPS_HOME. Alerts go through `Engine.raise_alert` and
`Engine.clear_alert`, which own de-duplication. Must not import Prefect or the runner.

    monitors.yaml ──load_monitors──▶ Monitors ──check──▶ ProbeResult ──sweep──▶ Outcome
                                                        (measure only)   (alert, all-clear)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from connectors.http import redact, url_secrets
from storeops.diagnostics import Diagnostic, listing, sort_key, suggest
from storeops.durations import DURATION_HELP, parse_duration
from storeops.errors import ConfigError, DefinitionError, StoreopsError
from storeops.ledger import LedgerError
from storeops.loader import allowed_keys
from storeops.runtime import Engine
from storeops.yamlsource import YamlDoc, load_yaml

__all__ = [
    "MONITORS_FILE",
    "STATE_FILE",
    "HttpProbe",
    "Monitors",
    "Outcome",
    "ProbeMemory",
    "ProbeResult",
    "ProbeStates",
    "PrometheusProbe",
    "Reading",
    "Threshold",
    "check",
    "cmd_probe",
    "due_probes",
    "load_monitors",
    "monitors_path",
    "sweep",
]

MONITORS_FILE = "monitors.yaml"
STATE_FILE = "probes.json"
#: A storefront answer is read up to this size: the probe measures latency, not content.
MAX_BODY = 1024 * 1024
#: Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS = 11_000

Path_ = tuple[str | int, ...]


# ---------------------------------------------------------------- the monitors file


def _seconds(value: Any) -> float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError(f"expected {DURATION_HELP}, found {value!r}")


Seconds = Annotated[float, BeforeValidator(_seconds)]
ProbeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
SopId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=80)]


def _http_url(value: Any) -> Any:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
    return value


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Model):
    """Breached when the value is strictly above `above` or strictly below `below`."""

    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.above is None and self.below is None:
            raise ValueError("a threshold needs above: NUMBER, below: NUMBER or both")
        return self

    def __str__(self) -> str:
        bounds = [f"above {_num(self.above)}"] if self.above is not None else []
        bounds += [f"below {_num(self.below)}"] if self.below is not None else []
        return " or ".join(bounds)


class _Breach(_Model):
    def thresholds(self) -> dict[str, Threshold]:
        """The thresholds given, by metric, in declaration order."""
        return {name: value for name, value in self if isinstance(value, Threshold)}

    @model_validator(mode="after")
    def _some_threshold(self) -> _Breach:
        if not self.thresholds():
            raise ValueError(f"breach needs at least one of {', '.join(type(self).model_fields)}")
        return self


class HttpBreach(_Breach):
    """Thresholds over the samples: latencies in milliseconds, error rate from 0 to 1."""

    p50_latency_ms: Threshold | None = None
    p90_latency_ms: Threshold | None = None
    p95_latency_ms: Threshold | None = None
    p99_latency_ms: Threshold | None = None
    max_latency_ms: Threshold | None = None
    avg_latency_ms: Threshold | None = None
    error_rate: Threshold | None = None


class PrometheusBreach(_Breach):
    """Thresholds over each series of the range: its last, largest, smallest or mean value."""

    last: Threshold | None = None
    max: Threshold | None = None
    min: Threshold | None = None
    avg: Threshold | None = None


class AlertSpec(_Model):
    """The alert a breach raises: its key, the runbook it starts, and the severity."""

    key: str = Field(min_length=1, max_length=200)
    sop: SopId
    severity: str | None = None
    summary: str | None = Field(default=None, max_length=2000)


class _Probe(_Model):
    model_config = ConfigDict(extra="forbid", frozen=False)
    _name: str = PrivateAttr(default="")
    #: A disabled probe is validated but never run on its schedule (the runner skips it);
    #: `storeops probe NAME` still runs it on request. Ship probes of systems a fresh
    #: machine does not have disabled, so a demo stack pages nobody.
    enabled: bool = True
    #: An environment variable holding the Authorization header to send (`Bearer …`,
    #: `Basic …`), for a Prometheus or a storefront behind a proxy. Like every STOREOPS_*
    #: variable it may name a Prefect Secret block (`prefect-secret:NAME`).
    auth_env: Annotated[str, Field(pattern=r"^STOREOPS_[A-Z0-9_]+$")] | None = None

    @property
    def name(self) -> str:
        """The probe's key in the monitors file."""
        return self._name


class HttpProbe(_Probe):
    """GET `url` `samples` times, one after another."""

    kind: Literal["http"]
    url: HttpUrl
    samples: int = Field(default=5, ge=1, le=100)
    timeout: Seconds = Field(default=5.0, gt=0, le=120)
    every: Seconds = Field(default=60.0, ge=1)
    #: Statuses that count as a good answer; empty means any 2xx or 3xx.
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    breach: HttpBreach
    clear_after: int = Field(default=3, ge=1, le=1000)
    alert: AlertSpec


class PrometheusProbe(_Probe):
    """A range query against a Prometheus HTTP API (`/api/v1/query_range`)."""

    kind: Literal["prometheus"]
    url: HttpUrl
    query: str = Field(min_length=1, max_length=10_000)
    window: Seconds = Field(default=900.0, gt=0)
    step: Seconds = Field(default=60.0, gt=0)
    timeout: Seconds = Field(default=10.0, gt=0, le=120)
    every: Seconds = Field(default=60.0, ge=1)
    #: What an empty answer (no series, or only NaN) means: healthy by default, since
    #: `sum(rate(errors[5m]))` has no series while nothing fails.
    no_data: Literal["ok", "breach"] = "ok"
    breach: PrometheusBreach
    clear_after: int = Field(default=3, ge=1, le=1000)
    alert: AlertSpec

    @model_validator(mode="after")
    def _points(self) -> PrometheusProbe:
        if self.window / self.step > MAX_POINTS:
            raise ValueError(
                f"window / step gives {self.window / self.step:,.0f} points; Prometheus "
                f"answers at most {MAX_POINTS:,}: use a larger step or a shorter window"
            )
        return self


Probe = Annotated[HttpProbe | PrometheusProbe, Field(discriminator="kind")]
PROBE_KINDS = ("http", "prometheus")


class Monitors(_Model):
    """Every probe of a monitors file, in the order the file lists them."""

    probes: dict[ProbeName, Probe] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _name_probes(self) -> Monitors:
        for name, probe in self.probes.items():
            probe._name = name
        return self


def monitors_path(
    sops_dir: Path, override: str | os.PathLike[str] | None = None, *, environ: Any = None
) -> Path:
    """The monitors file: `override`, else STOREOPS_MONITORS, else `<sops dir>/monitors.yaml`."""
    env = os.environ if environ is None else environ
    chosen = override or env.get("STOREOPS_MONITORS")
    return Path(chosen) if chosen else Path(sops_dir) / MONITORS_FILE


def load_monitors(
    path: str | os.PathLike[str], *, sops_dir: Path | None = None
) -> tuple[Monitors | None, list[Diagnostic]]:
    """Read and validate a monitors file: (monitors, []) or (None, every problem found).

    With `sops_dir`, each alert's runbook must be an SOP file there: a typo found at a
    breach, during an outage, would be found too late."""
    doc, problems = load_yaml(path)
    if doc is None:
        return None, [_reword_empty(d) for d in problems]
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        return None, [
            Diagnostic(
                "SOP006",
                f"the top level is a {type(doc.data).__name__}, but a monitors file is a "
                "mapping with `probes:`",
                doc.file,
                *doc.position(()),
            )
        ]
    found = list(doc.problems)
    try:
        monitors: Monitors | None = Monitors.model_validate(doc.data)
    except ValidationError as exc:
        monitors = None
        found += _pydantic_problems(exc, doc)
    if monitors is not None:
        found += _cross_checks(monitors, doc, sops_dir)
    found.sort(key=sort_key)
    errors = [d for d in found if d.severity == "error"]
    return (None if errors else monitors), found


def check_monitors_file(path: Path) -> list[Diagnostic]:
    """The problems of a monitors file beside its SOPs (runbooks must exist there)."""
    return load_monitors(path, sops_dir=path.parent)[1]


def _reword_empty(diag: Diagnostic) -> Diagnostic:
    if diag.code == "SOP006":
        return Diagnostic(
            diag.code, "the file is empty; a monitors file starts with `probes:`", diag.file
        )
    return diag


def _cross_checks(monitors: Monitors, doc: YamlDoc, sops_dir: Path | None) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    owners: dict[tuple[str, str], str] = {}
    known = sorted(p.stem for p in sops_dir.glob("*.yaml")) if sops_dir is not None else []
    known = [k for k in known if k not in ("team", "monitors")]
    for name, probe in monitors.probes.items():
        alert = probe.alert
        if sops_dir is not None and not (sops_dir / f"{alert.sop}.yaml").is_file():
            found.append(
                Diagnostic(
                    "SOP102",
                    f"probes.{name}.alert.sop: no runbook {alert.sop!r} in {sops_dir}; "
                    f"known: {listing(known) or 'none'}" + suggest(alert.sop, known),
                    doc.file,
                    *doc.position(("probes", name, "alert", "sop")),
                )
            )
        first = owners.setdefault((alert.sop, alert.key), name)
        if first != name:
            found.append(
                Diagnostic(
                    "SOP102",
                    f"probes.{name}.alert.key: {alert.key!r} (runbook {alert.sop}) is also "
                    f"raised by probe {first!r}; give each probe its own key, or one probe's "
                    "all-clear would close the other's incident",
                    doc.file,
                    *doc.position(("probes", name, "alert", "key")),
                )
            )
    return found


def _pydantic_problems(exc: ValidationError, doc: YamlDoc) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _data_path(doc.data, loc)
        kind = str(error["type"])
        if (path, kind) in seen:
            continue
        seen.add((path, kind))
        found.append(_describe(doc, error, kind, path, loc))
    return found


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """The YAML path of a pydantic loc: union tags (`http`) and `[key]` are not data keys."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif i == len(loc) - 1 and part != "[key]":
            path.append(part)
    return tuple(path)


def _describe(
    doc: YamlDoc, error: Mapping[str, Any], kind: str, path: Path_, loc: tuple[Any, ...]
) -> Diagnostic:
    where = f" in {_dotted(path[:-1])}" if len(path) > 1 else ""
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = allowed_keys(Monitors, loc[:-1], tag="kind")
        return Diagnostic(
            "SOP101",
            f"unknown key {key!r}{where}; allowed: {listing(allowed, 30)}" + suggest(key, allowed),
            doc.file,
            *doc.position(path, key=True),
        )
    if kind == "missing":
        return Diagnostic(
            "SOP104",
            f"missing required key {str(path[-1])!r}{where}",
            doc.file,
            *doc.position(path[:-1], key=True),
        )
    if kind == "union_tag_invalid":
        found = error.get("ctx", {}).get("tag", "?")
        return Diagnostic(
            "SOP102",
            f"{_dotted((*path, 'kind'))}: unknown probe kind {found!r}; allowed: "
            f"{listing(PROBE_KINDS)}" + suggest(str(found), PROBE_KINDS),
            doc.file,
            *doc.position((*path, "kind")),
        )
    if kind == "union_tag_not_found":
        return Diagnostic(
            "SOP104",
            f"missing required key 'kind' in {_dotted(path)}; one of {listing(PROBE_KINDS)}",
            doc.file,
            *doc.position(path, key=True),
        )
    if loc and loc[-1] == "[key]":
        return Diagnostic(
            "SOP102",
            f"probe name {str(path[-1])!r} in {_dotted(path[:-1])}: use lower-case letters, "
            "digits, - and _, starting with a letter",
            doc.file,
            *doc.position(path, key=True),
        )
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    value = error.get("input")
    if "found" not in message and not isinstance(value, dict | list):
        shown = repr(value)
        message += f", found {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return Diagnostic("SOP102", f"{_dotted(path)}: {message}", doc.file, *doc.position(path))


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "document"


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Reading:
    """One configured threshold against the value measured for it (None: not measured)."""

    metric: str
    value: float | None
    threshold: Threshold
    breached: bool

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.metric}=n/a ({self.threshold}: not measured)"
        verdict = "BREACH" if self.breached else "ok"
        return f"{self.metric}={_num(self.value)} ({self.threshold}: {verdict})"


@dataclass(frozen=True)
class ProbeResult:
    """What one check measured and whether it breached; never raised, always returned."""

    probe: str
    kind: str
    ok: bool
    measured: dict[str, float]
    readings: list[Reading]
    #: Why the probe breached (empty when ok), one sentence each, without secrets.
    reasons: list[str]
    #: What is worth knowing even when ok: failed samples under the threshold, no data.
    notes: list[str] = field(default_factory=list)
    checked_at: float = 0.0

    @property
    def breached(self) -> bool:
        return not self.ok

    def summary(self) -> str:
        """One line: each reading, then the reasons or notes."""
        parts = [str(r) for r in self.readings]
        extra = self.reasons if self.breached else self.notes
        parts += [r for r in extra if not any(r.startswith(p.metric) for p in self.readings)]
        return ", ".join(parts)


def check(
    probe: HttpProbe | PrometheusProbe,
    *,
    client: httpx.Client | None = None,
    now: float | None = None,
) -> ProbeResult:
    """Measure `probe` once. Failures to measure (refused, timed out, bad answer) are
    breaches with a reason, never exceptions: a probe that cannot see is not healthy."""
    try:
        headers = _auth_headers(probe)
    except ConfigError as exc:
        at = time.time() if now is None else now
        readings = [Reading(m, None, t, True) for m, t in probe.breach.thresholds().items()]
        return ProbeResult(probe.name, probe.kind, False, {}, readings, [str(exc)], [], at)
    owned = client is None
    client = client or httpx.Client(follow_redirects=False)
    try:
        if isinstance(probe, HttpProbe):
            return _check_http(probe, client, now, headers)
        return _check_prometheus(probe, client, now, headers)
    finally:
        if owned:
            client.close()


def _auth_headers(probe: HttpProbe | PrometheusProbe) -> dict[str, str]:
    """The Authorization header of `probe` (`auth_env`), read when it runs: a rotated
    token is picked up without a restart."""
    if probe.auth_env is None:
        return {}
    from connectors.secrets import resolve_environment

    value = os.environ.get(probe.auth_env, "").strip()
    if not value:
        raise ConfigError(
            f"probe {probe.name!r} sends the Authorization header from {probe.auth_env}, "
            "which is not set; set it (e.g. 'Bearer TOKEN') or remove auth_env"
        )
    value = resolve_environment({probe.auth_env: value})[probe.auth_env].strip()
    return {"Authorization": value}


def _header_secrets(headers: dict[str, str]) -> list[str]:
    """The credentials in headers (the whole value and the part after `Bearer `), to redact."""
    return [part for value in headers.values() for part in (value, value.split(" ", 1)[-1])]


def _check_http(
    probe: HttpProbe, client: httpx.Client, now: float | None, headers: dict[str, str]
) -> ProbeResult:
    at = time.time() if now is None else now
    secrets = url_secrets(probe.url) + _header_secrets(headers)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    for _ in range(probe.samples):
        started = time.perf_counter()
        try:
            with client.stream("GET", probe.url, timeout=probe.timeout, headers=headers) as answer:
                size = 0
                for chunk in answer.iter_bytes():
                    size += len(chunk)
                    if size >= MAX_BODY:
                        break
                status = answer.status_code
        except httpx.TimeoutException as exc:
            # Counted at the timeout: the true latency is at least that.
            latencies.append(probe.timeout * 1000)
            failures[f"{type(exc).__name__} after {_num(probe.timeout)}s"] += 1
            continue
        except httpx.HTTPError as exc:
            failures[redact(f"{type(exc).__name__}: {exc}", secrets)] += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        good = status in probe.expect_status if probe.expect_status else 200 <= status < 400
        if not good:
            failures[f"HTTP {status}"] += 1
    errors = sum(failures.values())
    measured: dict[str, float] = {
        "samples": probe.samples,
        "errors": errors,
        "error_rate": errors / probe.samples,
    }
    if latencies:
        ordered = sorted(latencies)
        for p in (50, 90, 95, 99):
            measured[f"p{p}_latency_ms"] = round(_percentile(ordered, p), 1)
        measured["max_latency_ms"] = round(ordered[-1], 1)
        measured["avg_latency_ms"] = round(sum(ordered) / len(ordered), 1)
    what = redact(probe.url, secrets)
    failed = (
        f"{errors}/{probe.samples} samples failed ("
        + "; ".join(f"{text} ×{n}" if n > 1 else text for text, n in failures.most_common(3))
        + ")"
    )
    readings = _readings(probe.breach.thresholds(), measured, measured)
    reasons = [f"{r.metric} {_num(r.value)} is {r.threshold}" for r in readings if r.breached]
    notes: list[str] = []
    if errors == probe.samples:  # nothing good came back: unhealthy whatever the thresholds
        reasons.append(f"no good answer from {what}: {failed}")
    elif errors:
        (reasons if reasons else notes).append(failed)
    return ProbeResult(
        probe=probe.name,
        kind="http",
        ok=not reasons,
        measured=measured,
        readings=readings,
        reasons=reasons,
        notes=notes,
        checked_at=at,
    )


def _percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (p95 of 5 samples is the largest)."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _readings(
    thresholds: Mapping[str, Threshold],
    high: Mapping[str, float],
    low: Mapping[str, float],
) -> list[Reading]:
    """Judge each threshold: `above` against the highest value, `below` against the lowest."""
    found: list[Reading] = []
    for metric, threshold in thresholds.items():
        top, bottom = high.get(metric), low.get(metric)
        over = threshold.above is not None and top is not None and top > threshold.above
        under = threshold.below is not None and bottom is not None and bottom < threshold.below
        value = bottom if under or (threshold.above is None) else top
        found.append(Reading(metric, value, threshold, over or under))
    return found


def _check_prometheus(
    probe: PrometheusProbe, client: httpx.Client, now: float | None, headers: dict[str, str]
) -> ProbeResult:
    at = time.time() if now is None else now
    base = probe.url.rstrip("/")
    hidden = url_secrets(base) + _header_secrets(headers)
    what = redact(base, hidden)
    params = {
        "query": probe.query,
        "start": f"{at - probe.window:.3f}",
        "end": f"{at:.3f}",
        "step": f"{probe.step:g}",
    }

    def failed(reason: str) -> ProbeResult:
        readings = [Reading(m, None, t, True) for m, t in probe.breach.thresholds().items()]
        return ProbeResult(probe.name, "prometheus", False, {}, readings, [reason], [], at)

    try:
        answer = client.get(
            f"{base}/api/v1/query_range", params=params, timeout=probe.timeout, headers=headers
        )
    except httpx.TimeoutException as exc:
        return failed(
            f"Prometheus at {what} gave no answer in {_num(probe.timeout)}s ({type(exc).__name__})"
        )
    except httpx.HTTPError as exc:
        return failed(
            redact(f"Prometheus at {what} is unreachable: {type(exc).__name__}: {exc}", hidden)
        )
    try:
        body: Any = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return failed(
            f"Prometheus at {what} answered HTTP {answer.status_code} without its JSON "
            "envelope; is the URL the Prometheus server (not a dashboard)?"
        )
    if body.get("status") != "success":
        return failed(
            f"Prometheus refused the query (HTTP {answer.status_code}, "
            f"{body.get('errorType', 'error')}): {str(body.get('error', ''))[:300]}"
        )
    data = body.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind != "matrix" or not isinstance(data, dict):
        return failed(f"Prometheus answered resultType {kind!r}; a range query gives 'matrix'")
    try:
        series = [_series_values(item) for item in data.get("result") or []]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return failed(f"Prometheus answered a matrix this probe cannot read: {exc}")
    series = [values for values in series if values]
    measured: dict[str, float] = {"series": len(series)}
    if not series:
        reason = f"no data: the query returned no samples in the last {_num(probe.window)}s"
        readings = [Reading(m, None, t, False) for m, t in probe.breach.thresholds().items()]
        if probe.no_data == "breach":
            readings = [Reading(r.metric, None, r.threshold, True) for r in readings]
            return ProbeResult(
                probe.name, "prometheus", False, measured, readings, [reason], [], at
            )
        return ProbeResult(probe.name, "prometheus", True, measured, readings, [], [reason], at)
    reduced = {
        "last": [values[-1] for values in series],
        "max": [max(values) for values in series],
        "min": [min(values) for values in series],
        "avg": [sum(values) / len(values) for values in series],
    }
    high = {name: max(values) for name, values in reduced.items()}
    low = {name: min(values) for name, values in reduced.items()}
    measured |= {name: _rounded(value) for name, value in high.items()}
    readings = _readings(probe.breach.thresholds(), high, low)
    readings = [Reading(r.metric, _opt_rounded(r.value), r.threshold, r.breached) for r in readings]
    reasons = [f"{r.metric} {_num(r.value)} is {r.threshold}" for r in readings if r.breached]
    return ProbeResult(probe.name, "prometheus", not reasons, measured, readings, reasons, [], at)


def _series_values(item: Mapping[str, Any]) -> list[float]:
    """A matrix series' finite values in time order (`[[unix_ts, "value"], ...]`)."""
    values = [float(pair[1]) for pair in item["values"]]
    return [v for v in values if math.isfinite(v)]


def _rounded(value: float) -> float:
    return float(f"{value:.6g}")


def _opt_rounded(value: float | None) -> float | None:
    return None if value is None else _rounded(value)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


# ---------------------------------------------------------------- state between sweeps


@dataclass
class ProbeMemory:
    """What a probe remembers between sweeps (kept in STOREOPS_HOME/probes.json)."""

    last_checked: float | None = None  # unix seconds
    healthy_streak: int = 0  # consecutive healthy results
    run: str | None = None  # the open incident this probe last saw for its alert
    healthy_in_run: int = 0  # consecutive healthy results while that incident was open
    cleared: bool = False  # whether the all-clear is recorded in that incident

    @classmethod
    def from_json(cls, data: Any) -> ProbeMemory:
        if not isinstance(data, dict):
            return cls()
        last = data.get("last_checked")
        return cls(
            last_checked=float(last) if isinstance(last, int | float) else None,
            healthy_streak=int(data.get("healthy_streak") or 0),
            run=str(data["run"]) if data.get("run") else None,
            healthy_in_run=int(data.get("healthy_in_run") or 0),
            cleared=bool(data.get("cleared")),
        )


@dataclass
class ProbeStates:
    """Every probe's memory, in one JSON file shared by the CLI and the runner.

    Written atomically (a temporary file renamed over the old one) under an exclusive
    lock, so two processes sweeping at once never lose each other's counters. A missing
    or unreadable file means fresh counters: the worst case is a later all-clear."""

    path: Path
    memory: dict[str, ProbeMemory] = field(default_factory=dict)

    @classmethod
    def at_home(cls, home: Path) -> ProbeStates:
        return cls.load(Path(home) / STATE_FILE)

    @classmethod
    def load(cls, path: Path) -> ProbeStates:
        state = cls(Path(path))
        state.reload()
        return state

    def reload(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        probes = data.get("probes") if isinstance(data, dict) else None
        self.memory = {
            str(name): ProbeMemory.from_json(item)
            for name, item in (probes.items() if isinstance(probes, dict) else [])
        }

    def of(self, name: str) -> ProbeMemory:
        return self.memory.setdefault(name, ProbeMemory())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": 1,
            "probes": {name: vars(mem) for name, mem in sorted(self.memory.items())},
        }
        handle, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def updating(self) -> Iterator[ProbeStates]:
        """Hold the lock, re-read the file, let the caller change memory, then save it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            _lock(lock.fileno())
            try:
                self.reload()
                yield self
                self.save()
            finally:
                _unlock(lock.fileno())


if sys.platform == "win32":  # pragma: no cover - storeops runs on POSIX; no lock there

    def _lock(fd: int) -> None:
        pass

    def _unlock(fd: int) -> None:
        pass

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def due_probes(monitors: Monitors, state: ProbeStates, now: float) -> list[str]:
    """Names of the probes whose `every` has passed since their last check (never checked:
    due), in file order. Pure: reads `state` as given (call `state.reload()` first to see
    what other processes did)."""
    due: list[str] = []
    for name, probe in monitors.probes.items():
        if not probe.enabled:
            continue
        last = state.memory[name].last_checked if name in state.memory else None
        if last is None or now - last >= probe.every:
            due.append(name)
    return due


# ---------------------------------------------------------------- sweeping

AlertAction = Literal[
    "none",  # healthy and no incident open for the alert
    "raised",  # breached: this sweep started the runbook
    "repeated",  # breached: the incident was open; the repeat is recorded in it
    "recovering",  # healthy, incident open, fewer than clear_after healthy results yet
    "cleared",  # this sweep recorded the all-clear (`alert.cleared`) in the incident
    "cleared_before",  # still healthy; the all-clear is already recorded
    "measured",  # measured only (dry run): no alert, no state change
    "failed",  # the engine refused (unknown runbook, bad severity, ledger trouble)
]


@dataclass(frozen=True)
class Outcome:
    """What one sweep did for one probe."""

    probe: str
    result: ProbeResult
    alert: AlertAction
    run_id: str | None = None
    healthy_in_run: int = 0
    clear_after: int = 0
    error: str | None = None

    def line(self, probe: HttpProbe | PrometheusProbe) -> str:
        verdict = "BREACH" if self.result.breached else "ok"
        key, sop = probe.alert.key, probe.alert.sop
        run = f" ({sop} run {self.run_id})" if self.run_id else ""
        said = {
            "none": "",
            "raised": f"alert {key} raised{run}",
            "repeated": f"alert {key} repeated{run}",
            "recovering": f"healthy {self.healthy_in_run}/{self.clear_after} "
            f"before the all-clear of {key}{run}",
            "cleared": f"alert {key} cleared{run}",
            "cleared_before": f"alert {key} already cleared{run}",
            "measured": "not alerting (dry run)",
            "failed": f"alert {key} NOT raised: {self.error}",
        }[self.alert]
        text = f"{self.probe}: {verdict}: {self.result.summary() or 'no thresholds'}"
        return text + (f"; {said}" if said else "")


def sweep(
    engine: Engine,
    monitors: Monitors,
    state: ProbeStates,
    *,
    names: Sequence[str] | None = None,
    drive: bool = True,
    now: float | None = None,
    client: httpx.Client | None = None,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Check each probe (all, or `names`) once, then act on the result, in file order.

    Breach: `Engine.raise_alert` (the engine starts the runbook once per open alert key and
    records repeats). Healthy: once `clear_after` consecutive healthy results were seen
    while an incident was open for the alert, `Engine.clear_alert` records the all-clear in
    it, once per incident. Counters are updated under the state file's lock. Engine
    refusals are reported in the Outcome, never raised: one bad probe must not silence
    the others. `drive=False` leaves a started run to the runner (its timer loop sees it).
    `report` gets each Outcome as soon as it is known (a probe can take samples × timeout).
    """
    chosen = [n for n, p in monitors.probes.items() if p.enabled] if names is None else list(names)
    unknown = [n for n in chosen if n not in monitors.probes]
    if unknown:
        raise ConfigError(
            f"no probe {unknown[0]!r} in the monitors file; known: "
            f"{listing(monitors.probes) or 'none'}" + suggest(unknown[0], monitors.probes)
        )
    owned = client is None
    client = client or httpx.Client(follow_redirects=False)
    outcomes: list[Outcome] = []
    try:
        for name in chosen:
            probe = monitors.probes[name]
            at = engine.clock() / 1e6 if now is None else now
            result = check(probe, client=client)
            with state.updating():
                memory = state.of(name)
                memory.last_checked = at
                outcomes.append(_act(engine, probe, result, memory, drive))
            if report is not None:
                report(outcomes[-1])
    finally:
        if owned:
            client.close()
    return outcomes


def _act(
    engine: Engine,
    probe: HttpProbe | PrometheusProbe,
    result: ProbeResult,
    memory: ProbeMemory,
    drive: bool,
) -> Outcome:
    alert = probe.alert

    def outcome(
        action: AlertAction, run_id: str | None = None, error: str | None = None
    ) -> Outcome:
        healthy = memory.healthy_in_run if run_id else 0
        return Outcome(probe.name, result, action, run_id, healthy, probe.clear_after, error)

    try:
        if result.breached:
            memory.healthy_streak = 0
            memory.healthy_in_run = 0
            summary = alert.summary or f"probe {probe.name}: " + "; ".join(result.reasons)
            run_id, started = engine.raise_alert(
                alert.key, sop=alert.sop, severity=alert.severity, summary=summary, drive=drive
            )
            memory.run, memory.cleared = run_id, False
            return outcome("raised" if started else "repeated", run_id)
        memory.healthy_streak += 1
        open_run = engine.ledger.find_run(alert.sop, alert.key, open_only=True)
        if open_run is None:
            memory.run, memory.healthy_in_run, memory.cleared = None, 0, False
            return outcome("none")
        if memory.run != open_run.run_id:  # an incident this probe has not seen yet
            memory.run, memory.healthy_in_run, memory.cleared = open_run.run_id, 0, False
        memory.healthy_in_run += 1
        if memory.cleared:
            return outcome("cleared_before", open_run.run_id)
        if memory.healthy_in_run < probe.clear_after:
            return outcome("recovering", open_run.run_id)
        engine.clear_alert(
            alert.key,
            sop=alert.sop,
            summary=f"probe {probe.name}: healthy for {memory.healthy_in_run} consecutive "
            f"checks ({result.summary()})",
            measured=result.measured,
        )
        memory.cleared = True
        return outcome("cleared", open_run.run_id)
    except (StoreopsError, LedgerError) as exc:
        return outcome("failed", memory.run, str(exc))


# ---------------------------------------------------------------- command line


def cmd_probe(args: argparse.Namespace, cfg: Any) -> int:
    """`storeops probe [NAME] [--monitors FILE] [--dry-run]`: check every probe (or one)
    once, print one line each, raise or clear alerts. Exit 0 whatever was measured; a bad
    monitors file raises DefinitionError (the CLI prints it compiler style, exit 1)."""
    from storeops.wake import runner_url, wake_runner

    path = monitors_path(cfg.sops, getattr(args, "monitors", None))
    if not path.is_file():
        raise ConfigError(
            f"no monitors file at {path}; create it (probes: …) or give --monitors FILE "
            "(or STOREOPS_MONITORS)"
        )
    monitors, problems = load_monitors(path, sops_dir=cfg.sops)
    for warning in (d for d in problems if d.severity != "error"):
        print(warning, file=sys.stderr)
    if monitors is None:
        raise DefinitionError([d for d in problems if d.severity == "error"])
    name: str | None = getattr(args, "name", None)
    names = [name] if name else None
    unknown = [n for n in names or () if n not in monitors.probes]
    if unknown:
        raise ConfigError(
            f"no probe {unknown[0]!r} in {path}; known: {listing(monitors.probes) or 'none'}"
            + suggest(unknown[0], monitors.probes)
        )
    if not monitors.probes:
        print(f"{path}: no probes")
        return 0
    if getattr(args, "dry_run", False):
        with httpx.Client(follow_redirects=False) as client:
            for probe_name in names or list(monitors.probes):
                probe = monitors.probes[probe_name]
                result = check(probe, client=client)
                print(Outcome(probe_name, result, "measured").line(probe))
        return 0
    engine = cfg.engine()
    try:
        runner = runner_url(cfg.home) is not None
        outcomes = sweep(
            engine,
            monitors,
            ProbeStates.at_home(cfg.home),
            names=names,
            drive=not runner,
            report=lambda done: print(done.line(monitors.probes[done.probe]), flush=True),
        )
        for outcome in outcomes:
            started = outcome.alert == "raised" and outcome.run_id is not None
            if started and runner and not wake_runner(cfg.home, str(outcome.run_id)):
                print("runner did not answer; driving the run in this process", file=sys.stderr)
                engine.drive(str(outcome.run_id))
    finally:
        engine.close()
    return 0
