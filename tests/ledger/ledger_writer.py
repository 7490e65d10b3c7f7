"""A second process for the ledger race tests: reads JSON commands on stdin, answers on
stdout, one line each. Uses only `storeops.ledger` and the standard library.

Commands: {"op": "read", "run": id} -> {"head": n}, remembering n;
{"op": "append", "run": id, "start": unix_time, "round": r} -> waits for `start`, appends a
task.completed with expected_seq = the remembered head, answers {"result": "won", "seq": s}
or {"result": "conflict", "expected": e, "actual": a, "saw_by": who completed it}.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

from storeops.ledger import ConcurrentAppendError, NewEvent, format_timestamp, open_ledger


def main() -> None:
    path, name = sys.argv[1], sys.argv[2]
    head = 0
    with open_ledger(path) as ledger:
        print(json.dumps({"ready": name}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "read":
                head = ledger.get_run(command["run"]).head_seq
                answer: dict[str, object] = {"head": head}
            else:
                while time.time() < command["start"]:  # both processes leave together
                    pass
                event = NewEvent(
                    "task.completed",
                    format_timestamp(datetime.now(UTC)),
                    {"task": "pack", "by": name, "round": command["round"]},
                )
                try:
                    stored = ledger.append(command["run"], [event], expected_seq=head)
                    answer = {"result": "won", "seq": stored[0].seq}
                except ConcurrentAppendError as exc:
                    # The loser re-reads and sees the other process's completion.
                    after = ledger.events(command["run"], after_seq=head)
                    answer = {
                        "result": "conflict",
                        "expected": exc.expected,
                        "actual": exc.actual,
                        "saw_by": after[0].data["by"],
                        "saw_round": after[0].data["round"],
                    }
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
