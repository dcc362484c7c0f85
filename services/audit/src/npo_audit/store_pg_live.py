"""Live stream: PostgreSQL LISTEN on the writers' notifications, fanned out to subscribers (the
SSE route in api.py).

The writer (any worker replica) notifies ``{chain, to}`` in the transaction that seals a batch,
so a notification arrives only after the records are committed; every API replica listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from .domain import Record
from .store import Live
from .store_pg_search import AuditQueries

log = logging.getLogger(__name__)


class RecordHub:
    def __init__(self, database_url: str, schema: str, channel: str, queries: AuditQueries) -> None:
        self._url, self._schema, self._channel = database_url, schema, channel
        self._queries = queries
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers: set[asyncio.Queue[Live]] = set()
        self._seen: dict[str, int] = {}
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self._url, server_settings={"search_path": self._schema})
        self._seen = await self._queries.heads()
        await self._conn.add_listener(self._channel, self._on_notify)
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._inbox.put_nowait(json.loads(str(payload)))

    async def _pump(self) -> None:
        while True:
            note = await self._inbox.get()
            try:
                if "flags" in note:
                    await self._deliver_flags([str(event_id) for event_id in note["flags"]])
                else:
                    await self._deliver(str(note["chain"]), int(note["to"]))
            except (asyncpg.PostgresError, OSError):
                log.exception("live stream could not read chain %s", note.get("chain"))

    async def _deliver(self, chain: str, to: int) -> None:
        after = self._seen.get(chain, 0)
        if to <= after or not self._subscribers:
            self._seen[chain] = max(after, to)
            return
        records = await self._queries.chain_range(chain, after, to)
        self._seen[chain] = to
        await self._publish(records)

    async def _deliver_flags(self, event_ids: list[str]) -> None:
        """Flags raised later (by the sweep) for records already streamed."""
        if self._subscribers:
            found = [await self._queries.find(event_id) for event_id in event_ids]
            await self._publish([record for record in found if record is not None])

    async def _publish(self, records: list[Record]) -> None:
        rules = await self._queries.flags_of([r.entry.event_id for r in records])
        for record in records:
            live = Live(record, tuple(rules.get(record.entry.event_id, ())))
            for queue in list(self._subscribers):
                if queue.full():  # a slow client: drop it rather than stall everyone
                    self._subscribers.discard(queue)
                else:
                    queue.put_nowait(live)

    async def subscribe(self, keepalive_s: float = 15.0) -> AsyncIterator[Live | None]:
        """New records as they commit; ``None`` after ``keepalive_s`` of silence (a heartbeat).

        Ends when the subscriber fell too far behind and was dropped (the client reconnects).
        """
        queue: asyncio.Queue[Live] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(queue)
        try:
            while queue in self._subscribers or not queue.empty():
                try:
                    yield await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield None
        finally:
            self._subscribers.discard(queue)
