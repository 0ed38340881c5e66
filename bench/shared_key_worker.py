"""One connector process of the shared-key benchmark: `python -m bench.shared_key_worker REQUEST.json OUT.json`.

REQUEST.json: `configuration` (configuration.json's values), `state` (the state a previous sync left), `blind`
(pace as before issue 19), `start_at` (epoch seconds: every process of a run waits for the same moment, so they
start together however long their imports took). The sync runs in-process with free operations; OUT.json holds
`started` and `ended` (epoch seconds), `rows` per query id, `rate_limited` (the 429s this client got) and
`reads` (the client's read-bucket requests).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.blind_pacing import blind_client
from dune_async.client import ClientSettings, DuneClient
from dune_async.sync import run_sync
from dune_async.tables import RESULT_TABLE


class CountingOperations:
    """Free operations that count the result rows written per query and keep the last state."""

    def __init__(self) -> None:
        self.rows: Counter[int] = Counter()
        self.state: dict[str, Any] | None = None

    def upsert(self, table: str, data: dict[str, Any]) -> None:
        if table == RESULT_TABLE:
            self.rows[int(data["query_id"])] += 1

    def update(self, table: str, modified: dict[str, Any]) -> None:
        pass

    def delete(self, table: str, keys: dict[str, Any]) -> None:
        pass

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.state = json.loads(json.dumps(state))


def main(request_path: str, out_path: str) -> None:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    clients: list[DuneClient] = []

    def factory(settings: ClientSettings) -> DuneClient:
        client = blind_client(settings) if request["blind"] else DuneClient(settings)
        clients.append(client)
        return client

    operations = CountingOperations()
    time.sleep(max(0.0, request["start_at"] - time.time()))
    started = time.time()
    reports = run_sync(request["configuration"], request["state"], operations, client_factory=factory)
    ended = time.time()
    failed = [(r.query_id, r.outcome) for r in reports if r.outcome != "SYNCED"]
    stats = clients[-1].stats
    Path(out_path).write_text(json.dumps({
        "started": started, "ended": ended, "failed": failed, "rows": dict(operations.rows),
        "rate_limited": stats.rate_limited, "reads": sum(stats.reads.values()),
    }), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
