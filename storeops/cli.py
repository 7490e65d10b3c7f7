"""The `storeops` command line: validate, inspect, start and complete SOP runs.

Edge module. Imports stay light (no Prefect) so `validate` answers fast. User mistakes end
in one clear line and exit 1 (problems) or 2 (usage); a traceback means a bug in storeops.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storeops.diagnostics import CODES, codes_markdown
from storeops.errors import ConfigError, DefinitionError, StoreopsError
from storeops.settings import Settings

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------- settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        home=args.home,
        ledger=args.ledger,
        sops=args.sops,
        templates=args.templates,
        roster=args.roster,
        lang=args.lang,
    )


def _emit_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} must look like NAME=VALUE")
        result[key.strip()] = value
    return result


# ---------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace, cfg: Settings) -> int:
    from connectors.probes import check_monitors_file
    from storeops.loader import validate_paths

    templates = args.templates_dir or (cfg.templates if cfg.templates.is_dir() else None)
    diagnostics, count = validate_paths(
        args.paths,
        roster_path=args.roster_file,
        templates_root=templates,
        check_monitors=check_monitors_file,
    )
    errors = [d for d in diagnostics if d.severity == "error"]
    warnings = [d for d in diagnostics if d.severity == "warning"]
    failed = bool(errors) or (args.strict and bool(warnings))
    if args.format == "json":
        _emit_json(
            {
                "files": count,
                "errors": len(errors),
                "warnings": len(warnings),
                "diagnostics": [d.to_dict() for d in diagnostics],
            }
        )
    else:
        for diag in diagnostics:
            print(diag)
        summary = f"{count} file(s) checked: {len(errors)} error(s), {len(warnings)} warning(s)"
        print(summary, file=sys.stderr if diagnostics else sys.stdout)
    return EXIT_PROBLEMS if failed else EXIT_OK


def cmd_connectors(args: argparse.Namespace, cfg: Settings) -> int:
    from connectors.check import cmd_connectors_check

    return cmd_connectors_check(args, cfg)


def cmd_passwd(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.web.cli import cmd_passwd as passwd

    return passwd(args, cfg)


def cmd_token(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.web.cli import cmd_token as token

    return token(args, cfg)


def cmd_inbox(args: argparse.Namespace, cfg: Settings) -> int:
    import os

    from storeops.web.__main__ import main as serve

    os.environ.update(cfg.environment())  # the server reads the same settings as this CLI
    return serve(["--port", str(args.port)])


def cmd_report(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.analytics import cmd_report as report

    return report(args, cfg)


def cmd_probe(args: argparse.Namespace, cfg: Settings) -> int:
    from connectors.probes import cmd_probe as probe

    return probe(args, cfg)


def cmd_schema(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.schema import sop_schema

    text = json.dumps(sop_schema(), ensure_ascii=False, indent=2) + "\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_codes(args: argparse.Namespace, cfg: Settings) -> int:
    if args.markdown:
        sys.stdout.write(codes_markdown())
    else:
        for code, (title, text) in CODES.items():
            print(f"{code}  {title}: {text}")
    return EXIT_OK


def _load_for_graph(target: str, cfg: Settings) -> Any:
    from storeops.loader import Checker

    path = Path(target)
    if not path.is_file():
        path = cfg.sops / f"{target}.yaml"
    if not path.is_file():
        raise ConfigError(f"no SOP file {target!r} and no {path}")
    loaded, problems = Checker().load(path)
    if loaded is None:
        raise DefinitionError([d for d in problems if d.severity == "error"])
    return loaded.spec


def cmd_graph(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.graph import to_dot, to_mermaid

    sop = _load_for_graph(args.sop, cfg)
    text = to_mermaid(sop, cfg.locale) if args.format == "mermaid" else to_dot(sop, cfg.locale)
    if args.format == "svg":
        dot = shutil.which("dot")
        if dot is None:
            raise ConfigError(
                "SVG needs Graphviz's `dot` (apt-get install graphviz); "
                "use --format dot or mermaid meanwhile"
            )
        text = subprocess.run(
            [dot, "-Tsvg"], input=text, capture_output=True, text=True, check=True
        ).stdout
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _print_tasks(tasks: list[dict[str, Any]], locale: str) -> None:
    from storeops.spec import localize

    if not tasks:
        print("no open tasks")
        return
    for t in tasks:
        flag = "OVERDUE " if t["overdue"] else ""
        due = (t["due_at"] or "")[:16].replace("T", " ")
        title = localize(t["title"], locale)
        roles = "/".join(t["roles"])
        print(f"{flag}{t['run']}  {t['step']}  [{roles}]  {title}  due {due or '-'}")


def cmd_start(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    params = _pairs(args.param, "--param")
    runner = _runner_up(cfg)
    run_id = engine.start(
        args.sop, params, actor=_actor(args, engine), key=args.key, drive=not runner
    )
    if runner:
        _handed_over(cfg, run_id)
    run, _head, _stored = engine.load(run_id)
    if args.format == "json":
        _emit_json({"run": run_id, "status": run.status, "tasks": engine.tasks()})
    else:
        print(f"started {run_id} ({run.status})")
        _print_tasks([t for t in engine.tasks() if t["run"] == run_id], cfg.locale)
    return EXIT_OK


def _runner_up(cfg: Settings) -> bool:
    """True when `storeops up` runs a runner: then the run-sop flow drives, not this CLI."""
    from storeops.wake import runner_url

    return runner_url(cfg.home) is not None


def _handed_over(cfg: Settings, run_id: str) -> None:
    """Wake the runner; if it does not answer, drive in-process so nothing waits."""
    from storeops.wake import wake_runner

    if not wake_runner(cfg.home, run_id):
        print("runner did not answer; driving the run in this process", file=sys.stderr)
        cfg.engine().drive(run_id)


def _actor(args: argparse.Namespace, engine: Any) -> str:
    actor: str = args.as_
    if actor not in engine.roster.people:
        raise ConfigError(
            f"--as {actor!r} is not in the roster ({', '.join(engine.roster.people) or 'empty'})"
        )
    return actor


def cmd_tasks(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    if args.as_:
        _actor(args, engine)
    tasks = engine.tasks(person=args.as_, role=args.role)
    if args.format == "json":
        _emit_json(tasks)
    else:
        _print_tasks(tasks, cfg.locale)
    return EXIT_OK


def _store_evidence(
    cfg: Settings, items: Sequence[str] | None, step_evidence: list[Any]
) -> dict[str, list[str]]:
    """Copy each file into the evidence store by SHA-256; return digests by evidence name."""
    result: dict[str, list[str]] = {}
    default = step_evidence[0].name if len(step_evidence) == 1 else None
    for item in items or []:
        name, sep, file = item.partition("=")
        if not sep:
            name, file = default or "", item
        if not name:
            raise ConfigError(f"--evidence {item!r}: say which evidence it is, as NAME=FILE")
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"--evidence {item!r}: no such file {file}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        target = cfg.home / "evidence" / digest[:2] / digest
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)
        result.setdefault(name, []).append(digest)
    return result


def _checklist(items: Sequence[str] | None) -> dict[int, str]:
    result: dict[int, str] = {}
    for item in items or []:
        if item.strip() == "all":
            result[0] = "done"
            continue
        number, sep, answer = item.partition("=")
        if not number.strip().isdigit():
            raise ConfigError(f"--check {item!r} must be N, all, or N='n/a: reason'")
        result[int(number)] = answer.strip() if sep else "done"
    return result


def cmd_task(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    locale = engine.roster.locale_of(args.as_) if args.as_ else cfg.locale
    task = engine.describe_task(args.run, args.step, locale)
    if args.format == "json":
        _emit_json(task)
        return EXIT_OK
    print(f"{task['title']}  [{task['type']} · {'/'.join(task['roles'])}]")
    print(f"run {task['run']} · step {task['step']} · due {(task['due_at'] or '-')[:16]}")
    if task["instructions"]:
        print("\n" + task["instructions"].rstrip())
    if task["checklist"]:
        print("\nchecklist (--check N, or --check N='n/a: reason'):")
        for item in task["checklist"]:
            optional = "" if item["required"] else "  (optional)"
            print(f"  {item['number']}. {item['item']}{optional}")
    if task["fields"]:
        print("\nform (--field NAME=VALUE):")
        for name, spec in task["fields"].items():
            need = "required" if spec["required"] else "optional"
            bounds = "".join(f" {k} {spec[k]:g}" for k in ("min", "max") if spec[k] is not None)
            print(f"  {name}: {spec['type']}, {need}{bounds}  — {spec['title']}")
    if task["evidence"]:
        print("\nevidence (--evidence NAME=FILE):")
        for item in task["evidence"]:
            need = f"at least {max(item['min_count'], 1)}" if item["required"] else "optional"
            print(f"  {item['name']}: {need} — {item['title']}")
    return EXIT_OK


def cmd_done(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    actor = _actor(args, engine)
    run, _head, _stored = engine.load(args.run)
    token = run.token(args.step)
    state = run.states.get(token.state) if token is not None else None
    evidence = _store_evidence(cfg, args.evidence, list(getattr(state, "evidence", [])))
    runner = _runner_up(cfg)
    after = engine.complete(
        args.run,
        args.step,
        actor=actor,
        fields=_pairs(args.field, "--field"),
        evidence=evidence,
        checklist=_checklist(args.check),
        note=args.note,
        drive=not runner,
    )
    if runner:
        _handed_over(cfg, args.run)
    print(f"{args.step} completed by {actor}; run {args.run} is {after.status}")
    _print_tasks([t for t in engine.tasks() if t["run"] == args.run], cfg.locale)
    return EXIT_OK


def cmd_reject(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    actor = _actor(args, engine)
    runner = _runner_up(cfg)
    after = engine.complete(
        args.run, args.step, actor=actor, reject=True, reason=args.reason, drive=not runner
    )
    if runner:
        _handed_over(cfg, args.run)
    print(f"{args.step} rejected by {actor}; run {args.run} is {after.status}")
    _print_tasks([t for t in engine.tasks() if t["run"] == args.run], cfg.locale)
    return EXIT_OK


def cmd_claim(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    actor = _actor(args, engine)
    engine.claim(args.run, args.step, actor=actor, to=args.to)
    who = args.to or actor
    how = f"reassigned to {who} by {actor}" if args.to else f"claimed by {actor}"
    print(f"{args.step} in run {args.run} {how}; only {who} may complete it now")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    runs = engine.ledger.runs(status=args.status, sop_id=args.sop)
    if args.format == "json":
        _emit_json([dataclasses.asdict(r) for r in runs])
        return EXIT_OK
    if not runs:
        print("no runs")
    for r in runs:
        key = f" key={r.business_key}" if r.business_key else ""
        print(f"{r.run_id}  {r.sop_id} v{r.version}  {r.status}{key}  started {r.started_at[:19]}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.timeline import render

    engine = cfg.engine()
    run, _head, stored = engine.load(args.run)
    events = [{"type": e.type, "at": e.at, "data": e.data, "seq": e.seq} for e in stored]
    if args.format == "json":
        _emit_json({"run": args.run, "status": run.status, "events": events})
        return EXIT_OK
    for line in render(events, run.sop, cfg.locale):
        print(line)
    open_tasks = [t for t in engine.tasks() if t["run"] == args.run]
    if open_tasks:
        print("waiting for:")
        _print_tasks(open_tasks, cfg.locale)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.ledger import open_ledger

    ledger = open_ledger(cfg.ledger_url)
    report = ledger.verify(args.run)
    if args.format == "json":
        _emit_json(
            {
                "ok": report.ok,
                "runs": report.runs_checked,
                "events": report.events_checked,
                "problems": [str(p) for p in report.problems],
            }
        )
    else:
        for problem in report.problems:
            print(problem)
        verdict = "intact" if report.ok else "TAMPERED"
        print(f"{report.runs_checked} run(s), {report.events_checked} event(s): {verdict}")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_advance(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.durations import us_to_iso

    engine = cfg.engine()
    if args.run:
        print(f"{args.run}: {engine.drive(args.run).status}")
        return EXIT_OK
    driven = engine.tick()
    for run_id in driven:
        print(f"{run_id}: {engine.ledger.get_run(run_id).status}")
    wake = engine.next_wake()
    print(
        f"{len(driven)} run(s) had timers due; next timer: "
        + (us_to_iso(wake)[:19].replace("T", " ") + " UTC" if wake else "none")
    )
    return EXIT_OK


def cmd_recover(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    runner = _runner_up(cfg)
    found = engine.recover(drive=not runner and not args.dry_run)
    for run_id in found:
        if runner and not args.dry_run:
            _handed_over(cfg, run_id)
        print(f"{run_id}: {engine.ledger.get_run(run_id).status}")
    verb = "found" if args.dry_run else ("handed to the runner" if runner else "continued")
    print(f"{len(found)} open run(s) had work due and were {verb}; wake times of the rest checked")
    for run_id, why in engine.stuck.items():
        print(f"{run_id}: could not be continued: {why}", file=sys.stderr)
    return EXIT_PROBLEMS if engine.stuck else EXIT_OK


def cmd_simulate(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.ledger import open_ledger
    from storeops.simulate import load_scenario, simulate
    from storeops.templates import TemplateLibrary

    scenario = load_scenario(args.script)
    if args.sop and args.sop != scenario.sop:
        raise ConfigError(f"the scenario {args.script} is for {scenario.sop!r}, not {args.sop!r}")
    ledger = open_ledger(args.ledger_file or ":memory:")
    result = simulate(
        scenario,
        ledger=ledger,
        sops_dir=cfg.sops,
        templates=TemplateLibrary(cfg.templates),
        roster=cfg.roster(),
        locale=cfg.locale,
    )
    report = ledger.verify()
    if args.format == "json":
        _emit_json(
            {
                "run": result.run_id,
                "status": result.status,
                "covered": result.covered,
                "uncovered": result.uncovered,
                "problems": result.problems,
                "ledger_ok": report.ok,
                "transcript": result.lines,
            }
        )
    else:
        for line in result.lines:
            print(line)
        total = len(result.covered) + len(result.uncovered)
        print(f"\ncovered {len(result.covered)}/{total} states", end="")
        print(f"; not covered: {', '.join(result.uncovered)}" if result.uncovered else "")
        print(
            f"ledger: {report.events_checked} events, chain {'intact' if report.ok else 'BROKEN'}"
        )
        for problem in result.problems:
            print(f"scenario problem: {problem}")
    return EXIT_OK if result.ok and report.ok else EXIT_PROBLEMS


def cmd_alert(args: argparse.Namespace, cfg: Settings) -> int:
    engine = cfg.engine()
    runner = _runner_up(cfg)
    run_id, started = engine.raise_alert(
        args.key,
        sop=args.sop,
        severity=args.severity,
        summary=args.summary,
        drive=not runner,
    )
    if runner:
        _handed_over(cfg, run_id)
    what = "started" if started else "already open (repeat recorded)"
    print(f"alert {args.key}: {args.sop} run {run_id} {what}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.stack import cmd_up as up

    return up(cfg.home, port=args.port, storeops_env=cfg.environment())


def cmd_down(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.stack import cmd_down as down
    from storeops.wake import RUNNER_FILE

    code = down(cfg.home)
    if code == 0:
        (cfg.home / RUNNER_FILE).unlink(missing_ok=True)  # a killed runner leaves it behind
    return code


def cmd_status(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.stack import cmd_status as status

    return status(cfg.home)


def cmd_demo(args: argparse.Namespace, cfg: Settings) -> int:
    from storeops.demo import run_demo

    return run_demo(cfg, keep=args.keep)


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with one line, as argparse does
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options accepted before or after the command (`storeops show RUN --lang zh-CN`)."""
    add = parser.add_argument
    add("--home", default=default, help="state folder (STOREOPS_HOME, default ./.storeops)")
    add("--ledger", default=default, help="ledger path or URL (STOREOPS_LEDGER)")
    add("--sops", default=default, help="SOP library folder (STOREOPS_SOPS, default ./sops)")
    add("--templates", default=default, help="templates folder (default ./templates)")
    add("--roster", default=default, help="team roster (default sops/team.yaml)")
    add("--lang", default=default, choices=["zh-CN", "en"], help="language of titles")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="storeops",
        description="Standard operating procedures for store teams, with an audit ledger.",
    )
    _global_options(parser, default=None)
    common = _Parser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_parser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    p = add_parser("validate", help="check SOP files; all problems at once")
    p.add_argument("paths", nargs="+", help="files or folders")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--roster-file", help="roster to check roles against")
    p.add_argument("--templates-dir", help="templates folder to check against")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.set_defaults(func=cmd_validate)

    p = add_parser("schema", help="write the JSON Schema of the SOP language")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_schema)

    p = add_parser("codes", help="list diagnostic codes")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=cmd_codes)

    p = add_parser("graph", help="draw an SOP as Mermaid, DOT or SVG")
    p.add_argument("sop", help="SOP id or file")
    p.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.add_argument("--output", "-o")
    p.set_defaults(func=cmd_graph)

    p = add_parser("start", help="start a run")
    p.add_argument("sop")
    p.add_argument("--param", "-p", action="append", metavar="K=V")
    p.add_argument("--as", dest="as_", required=True, metavar="PERSON")
    p.add_argument("--key", help="business key (default from the SOP's business_key)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_start)

    p = add_parser("tasks", help="open tasks, overdue first")
    p.add_argument("--as", dest="as_", metavar="PERSON")
    p.add_argument("--role")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_tasks)

    p = add_parser("task", help="what a step asks for: instructions, checklist, form, evidence")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("--as", dest="as_", metavar="PERSON", help="show it in this person's language")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_task)

    p = add_parser("done", help="complete a step")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("--as", dest="as_", required=True, metavar="PERSON")
    p.add_argument("--field", "-f", action="append", metavar="K=V")
    p.add_argument("--evidence", "-e", action="append", metavar="[NAME=]FILE")
    p.add_argument(
        "--check", "-c", action="append", metavar="N[=n/a: reason]", help="tick item N, or all"
    )
    p.add_argument("--note")
    p.set_defaults(func=cmd_done)

    p = add_parser("reject", help="reject a step (approvals, or tasks with on_reject)")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("--as", dest="as_", required=True, metavar="PERSON")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_reject)

    p = add_parser("claim", help="take a step (or, as a lead, --to someone: reassign it)")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("--as", dest="as_", required=True, metavar="PERSON")
    p.add_argument("--to", metavar="PERSON", help="a lead hands the step to this person")
    p.set_defaults(func=cmd_claim)

    p = add_parser("runs", help="list runs")
    p.add_argument("--status")
    p.add_argument("--sop")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_runs)

    p = add_parser("show", help="a run's timeline")
    p.add_argument("run")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_show)

    p = add_parser("verify", help="check every hash chain in the ledger")
    p.add_argument("run", nargs="?")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_verify)

    p = add_parser("advance", help="fire the timers that are due (reminders, timeouts, waits)")
    p.add_argument("run", nargs="?")
    p.set_defaults(func=cmd_advance)

    p = add_parser("inbox", help="serve the web inbox on 127.0.0.1 (`storeops up` also does)")
    p.add_argument("--port", type=int, default=8765, help="loopback port (0: any free)")
    p.set_defaults(func=cmd_inbox)

    p = add_parser("passwd", help="set a person's inbox password")
    p.add_argument("person")
    p.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    p.set_defaults(func=cmd_passwd)

    p = add_parser("token", help="issue a person's inbox sign-in token (replaces the old)")
    p.add_argument("person")
    p.add_argument("--revoke", action="store_true", help="remove password and token instead")
    p.set_defaults(func=cmd_token)

    p = add_parser("report", help="SOP analytics: cycle times, slowest steps, on-time rates")
    p.add_argument(
        "--since", metavar="DATE", help="date (00:00 UTC) or instant; default 7 days back"
    )
    p.add_argument("--until", metavar="DATE", help="date (that whole day) or instant; default now")
    p.add_argument("--sop", metavar="ID", help="only this SOP")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text")
    p.add_argument(
        "--table",
        choices=["cycle", "steps", "slowest", "roles", "people"],
        help="one table (required for csv)",
    )
    p.set_defaults(func=cmd_report)

    p = add_parser("probe", help="run the monitoring probes once; raise or clear their alerts")
    p.add_argument("name", nargs="?", help="only this probe (default: all)")
    p.add_argument(
        "--monitors", metavar="FILE", help="default STOREOPS_MONITORS or sops/monitors.yaml"
    )
    p.add_argument("--dry-run", action="store_true", help="measure only: no alert, no state change")
    p.set_defaults(func=cmd_probe)

    p = add_parser("connectors", help="check the configured store, webhooks and channels")
    p.add_argument("action", choices=["check"], help="check: reachability and credentials")
    p.add_argument("--send-test", metavar="PERSON", help="also deliver a test message to PERSON")
    p.set_defaults(func=cmd_connectors)

    p = add_parser("recover", help="continue open runs whose driver crashed or whose wake was lost")
    p.add_argument("--dry-run", action="store_true", help="only list the runs that are due")
    p.set_defaults(func=cmd_recover)

    p = add_parser("simulate", help="run an SOP with a fake clock and scripted people")
    p.add_argument("sop", nargs="?")
    p.add_argument("--script", required=True)
    p.add_argument("--ledger-file", help="keep the simulated ledger here (default: memory)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_simulate)

    p = add_parser("alert", help="start the incident runbook for an alert (once per key)")
    p.add_argument("key", help="the alert key, e.g. storefront-latency")
    p.add_argument("--severity", help="passed to the runbook's `severity` parameter")
    p.add_argument("--summary", help="passed to the runbook's `summary` parameter")
    p.add_argument(
        "--sop", default="peak-traffic", help="the runbook to start (default peak-traffic)"
    )
    p.set_defaults(func=cmd_alert)

    p = add_parser("up", help="start the local stack (Prefect server on 127.0.0.1)")
    p.add_argument("--port", type=int, help="Prefect server port (default 4200, else free)")
    p.set_defaults(func=cmd_up)

    p = add_parser("down", help="stop exactly what `storeops up` started")
    p.set_defaults(func=cmd_down)

    p = add_parser("status", help="what the local stack runs, and whether it is healthy")
    p.set_defaults(func=cmd_status)

    p = add_parser("demo", help="promotion prep end to end on the local stack, people simulated")
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg: Settings | None = None
    try:
        cfg = _settings(args)
        code: int = args.func(args, cfg)
        return code
    except DefinitionError as exc:
        for diag in exc.diagnostics:
            print(diag, file=sys.stderr)
        return EXIT_PROBLEMS
    except StoreopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`storeops report | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_PROBLEMS
    except Exception as exc:
        from storeops.ledger import LedgerError

        if isinstance(exc, LedgerError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_PROBLEMS
        raise
    finally:
        if cfg is not None:
            cfg.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
