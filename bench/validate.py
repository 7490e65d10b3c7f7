"""Validation time of a generated 500-state SOP: the whole `Checker.load`, against ruamel.

`Checker(roster=...).load(path)` is everything `storeops validate` does for one file:
YAML with positions, pydantic, graph checks, expressions, roles against the roster.
Measured in the same run against ruamel's round-trip load alone (the loader that keeps
positions), plus a breakdown of the stages. Imports storeops and ruamel.yaml.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ruamel.yaml import YAML

from bench.common import REPEATS, Section, Target, duration, interleaved
from storeops import spec as s
from storeops.checks import check_spec
from storeops.loader import Checker, load_roster
from storeops.roster import Roster
from storeops.yamlsource import load_yaml

BIG = 500
SMALL = 10
ROLES = ("ops_lead", "merchandiser", "designer", "cs_agent", "warehouse", "data_analyst")

ROSTER = """\
roles:
  ops_lead: {zh-CN: 负责人, en: Ops lead}
  merchandiser: {zh-CN: 运营, en: Merchandiser}
  designer: {zh-CN: 美工, en: Designer}
  cs_agent: {zh-CN: 客服, en: Customer service}
  warehouse: {zh-CN: 物流, en: Warehouse}
  data_analyst: {zh-CN: 数据分析, en: Data analyst}
people:
  li.wei: {name: 李伟, roles: [ops_lead], locale: zh-CN}
  chen.jing: {name: 陈静, roles: [merchandiser], locale: zh-CN}
  wang.fang: {name: 王芳, roles: [designer], locale: zh-CN}
  anna.schmidt: {name: Anna Schmidt, roles: [cs_agent], locale: en}
  liu.yang: {name: 刘洋, roles: [warehouse], locale: zh-CN}
  sam.lee: {name: Sam Lee, roles: [data_analyst], locale: en}
"""


def _task(i: int, name: str, target: str, first: str) -> str:
    role = ROLES[i % len(ROLES)]
    timeout = ("fail", "skip", f"{{goto: {first}}}")[i % 3]
    return f"""\
  {name}:
    type: task
    role: {role}
    title: {{zh-CN: 第{i}步：核对商品与库存, en: "Step {i}: check products and stock"}}
    instructions:
      zh-CN: 打开后台，核对本批次商品的价格、库存和上架状态；有问题时填写备注。
      en: Open the store admin and check price, stock and listing of this batch.
    checklist:
      - {{zh-CN: 价格与活动价一致, en: Price matches the promotion price}}
      - {{zh-CN: 库存不少于安全库存, en: Stock is above the safety level}}
      - {{item: {{zh-CN: 主图已更新（可选）, en: Main image updated (optional)}}, required: false}}
    fields:
      checked:
        {{type: int, required: true, min: 0, title: {{zh-CN: 已核对数量, en: Items checked}}}}
      status: {{type: enum, values: [ok, late, blocked], required: true}}
      note: {{type: string, title: {{zh-CN: 备注, en: Note}}}}
    due: 4h
    remind: {{every: 1h, max: 3}}
    escalate: {{after: 6h, to: ops_lead}}
    timeout: 1d
    on_timeout: {timeout}
    next: {target}
"""


def _choice(i: int, name: str, target: str, previous: str) -> str:
    return f"""\
  {name}:
    type: choice
    title: {{zh-CN: 第{i}步：判断, en: "Step {i}: decide"}}
    choices:
      - when: steps.{previous}.fields.checked >= params.min_checked
        next: {target}
      - when: steps.{previous}.fields.status == 'blocked'
        next: abort
    default: {target}
"""


def _action(i: int, name: str, target: str) -> str:
    return f"""\
  {name}:
    type: action
    title: {{zh-CN: 第{i}步：同步库存, en: "Step {i}: sync stock"}}
    uses: store.inventory_levels
    with:
      promo: "{{{{ params.promo_code }}}}"
      window_days: 30
      note: "step {i} of {{{{ run.id }}}}"
    retry: {{attempts: 3, backoff: 30s, max_delay: 5m}}
    timeout: 30s
    catch: {{Error: abort}}
    save_as: stock_{i}
    next: {target}
"""


def generate(states: int, sop_id: str) -> str:
    """YAML text of an SOP with `states` states: mostly tasks, every 10th a choice, every
    10th (offset 5) an action, then `done` (succeed) and `abort` (fail)."""
    chain = states - 2
    names = [f"step_{i:04d}" for i in range(chain)]
    parts = [
        f"id: {sop_id}\n",
        "version: 1\n",
        "title: {zh-CN: 生成的大型 SOP, en: Generated large SOP}\n",
        "params:\n",
        "  promo_code: {type: string, required: true}\n",
        "  min_checked: {type: int, default: 1, min: 0}\n",
        "business_key: params.promo_code\n",
        f"roles: [{', '.join(ROLES)}]\n",
        f"start: {names[0]}\n",
        "states:\n",
    ]
    for i, name in enumerate(names):
        target = names[i + 1] if i + 1 < chain else "done"
        if i % 10 == 9 and i > 0 and names[i - 1].startswith("step_"):
            parts.append(_choice(i, name, target, names[i - 1]))
        elif i % 10 == 5:
            parts.append(_action(i, name, target))
        else:
            parts.append(_task(i, name, target, names[0]))
    parts.append("  done: {type: succeed}\n")
    parts.append("  abort: {type: fail, error: Aborted}\n")
    return "".join(parts)


def run() -> Section:
    section = Section("validate", f"validating a generated {BIG}-state SOP")
    with tempfile.TemporaryDirectory(prefix="storeops-bench-") as tmp:
        folder = Path(tmp)
        (folder / "team.yaml").write_text(ROSTER, encoding="utf-8")
        roster, problems = load_roster(folder / "team.yaml")
        if roster is None:
            raise RuntimeError(f"bench roster is invalid: {problems}")
        big = folder / "generated-big.yaml"
        big.write_text(generate(BIG, big.stem), encoding="utf-8")
        small = folder / "generated-small.yaml"
        small.write_text(generate(SMALL, small.stem), encoding="utf-8")
        _measure(section, roster, big, small)
    return section


def _check(roster: Roster, path: Path) -> None:
    loaded, diagnostics = Checker(roster=roster).load(path)  # a fresh expression cache each time
    if loaded is None:
        raise RuntimeError(f"{path.name} does not validate: {[str(d) for d in diagnostics[:3]]}")


def _measure(section: Section, roster: Roster, big: Path, small: Path) -> None:
    text = big.read_text(encoding="utf-8")
    small_text = small.read_text(encoding="utf-8")
    _check(roster, big)
    doc, _ = load_yaml(big)
    assert doc is not None
    sop = s.SopSpec.model_validate(doc.data)
    if len(s.all_states(sop)) != BIG:  # pragma: no cover - bench sanity
        raise RuntimeError(f"generated {len(s.all_states(sop))} states, expected {BIG}")
    # Warm up every path on the small file: the big one costs seconds per call in ruamel,
    # and one-shot timings need imports and class set-up done, not a full-size rehearsal.
    _check(roster, small)
    YAML().load(small_text)
    YAML(typ="safe").compose(small_text)

    cases = {
        "Checker.load (whole validation)": lambda: duration(lambda: _check(roster, big)),
        "ruamel round-trip load alone": lambda: duration(lambda: YAML().load(text)),
    }
    main = interleaved(cases, repeats=REPEATS, warmup=0, budget=20.0)
    stages = interleaved(
        {
            "stage: load_yaml (C composer + positions)": lambda: duration(lambda: load_yaml(big)),
            "of which: C composer alone (node tree)": lambda: duration(
                lambda: YAML(typ="safe").compose(text)
            ),
            "stage: pydantic SopSpec.model_validate": lambda: duration(
                lambda: s.SopSpec.model_validate(doc.data)
            ),
            "stage: graph checks (check_spec)": lambda: duration(lambda: check_spec(sop)),
            f"Checker.load, {SMALL}-state file": lambda: duration(lambda: _check(roster, small)),
        },
        repeats=REPEATS,
        warmup=0,
        budget=8.0,
    )
    rows = {name: section.row(name, found, "ms", 1000) for name, found in main.items()}
    for name, found in stages.items():
        section.row(name, found, "ms", 1000)
    ours = rows["Checker.load (whole validation)"].value
    section.ratio(
        "ruamel round-trip / Checker.load", rows["ruamel round-trip load alone"].value, ours
    )
    section.notes.append(
        f"generated file: {BIG} states ({BIG - 2} in a chain: tasks with role, title, "
        "instructions, checklist, fields, due, remind, escalate, timeout, "
        "on_timeout, next; every 10th a choice with two expressions, every 10th offset 5 "
        f"an action with `with:` templates), {len(text.encode()) / 1024:.0f} KiB, roles "
        "declared and staffed in a roster; it validates with no errors."
    )
    section.notes.append(
        "Checker.load is timed with a fresh Checker each time, so expressions compile "
        "again (no warm cache); the roster is loaded once, outside the timing."
    )
    section.targets.append(
        Target(f"validate {BIG}-state SOP", ours / 1000, 1.0, "s", higher_is_better=False)
    )
