"""Runs the conformance kit's scenarios against a client command and reports each requirement.

    outcomes = run_kit(ClientCommand("mybin {address} {client_id} {token} {add} {examples}"))
    print(table(outcomes)); print(as_json(outcomes))
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedcore.conformance.harness import ClientCommand, Harness
from fedcore.conformance.scenarios import SCENARIOS, Outcome

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "conformance-token"


def check_scenarios(names: Sequence[str]) -> list[str]:
    """`names` checked against the kit's scenarios, in the kit's order.

    Raises:
        ValueError: a name that is not a scenario.
    """
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; the kit has "
                         f"{', '.join(SCENARIOS)}")
    return [n for n in SCENARIOS if n in names]


def run_kit(command: ClientCommand, scenarios: Sequence[str] | None = None, *,
            token: str = DEFAULT_TOKEN, log_dir: Path | None = None) -> list[Outcome]:
    """Run `scenarios` (all by default) against the client `command` starts; one `Outcome`
    per requirement checked. Each scenario gets fresh coordinators and a fresh client process,
    all stopped before the next begins. The clients' output goes to `log_dir` (a temporary
    directory when None, removed when every requirement passed)."""
    names = check_scenarios(list(scenarios) if scenarios is not None else list(SCENARIOS))
    owned = log_dir is None
    logs = Path(tempfile.mkdtemp(prefix="fedcore-conformance-")) if log_dir is None else log_dir
    logs.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    for name in names:
        harness = Harness(command, token, logs)
        try:
            outcomes.extend(SCENARIOS[name](harness))
        finally:
            harness.close()
    if owned and all(o.passed for o in outcomes):
        shutil.rmtree(logs, ignore_errors=True)
    return outcomes


def passed(outcomes: Sequence[Outcome]) -> bool:
    """Whether every requirement checked passed (and at least one was checked)."""
    return bool(outcomes) and all(o.passed for o in outcomes)


def table(outcomes: Sequence[Outcome]) -> str:
    """A plain-text table: one row per requirement checked, the details of failures below."""
    rows = [("result", "requirement", "section", "scenario", "detail")]
    rows += [("PASS" if o.passed else "FAIL", o.requirement.id, o.requirement.section,
              o.scenario, o.detail) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
             for r in rows]
    failed = [o for o in outcomes if not o.passed]
    lines.append("")
    lines.append(f"{len(outcomes) - len(failed)} of {len(outcomes)} requirements passed")
    by_requirement: dict[str, list[Outcome]] = {}
    for o in failed:
        by_requirement.setdefault(o.requirement.id, []).append(o)
    for group in by_requirement.values():
        requirement = group[0].requirement
        lines.append(f"FAILED {requirement.id} (docs/protocol.md {requirement.section}; "
                     f"scenario {', '.join(o.scenario for o in group)}): {requirement.text}")
    return "\n".join(lines)


def as_json(outcomes: Sequence[Outcome]) -> str:
    """One JSON line: `passed` and every requirement checked."""
    return json.dumps({
        "passed": passed(outcomes),
        "requirements": [
            {"id": o.requirement.id, "section": o.requirement.section, "scenario": o.scenario,
             "passed": o.passed, "detail": o.detail, "text": o.requirement.text}
            for o in outcomes
        ],
    })
