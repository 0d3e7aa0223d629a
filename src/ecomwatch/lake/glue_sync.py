"""`[aws] glue_sync = true`: the lake's table kept registered in Glue while a run or the
service writes it. At start the table is registered as `ecomwatch lake register` does; after
each commit the days it wrote that Glue does not have yet are added, from a background thread
(the pipeline never waits on Glue). A call that fails leaves its days pending (and a failed
registration the table too): they are tried again after the next commit and at close, and
what is still missing then is said in the summary (and fixed by `ecomwatch lake register`)."""

from __future__ import annotations

import queue
import threading
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ecomwatch.aws_settings import region
from ecomwatch.config import AwsConfig
from ecomwatch.lake.glue_catalog import CatalogTable, GlueCatalog, catalog_table


class GlueSync:
    def __init__(self, lake_location: str, partition_paths: list[str], settings: AwsConfig,
                 client: Any | None = None) -> None:  # fmt: skip
        assert settings.glue_database is not None
        if client is None:
            session = boto3.session.Session()
            client = session.client("glue", region_name=region(session))
        self.catalog = GlueCatalog(client)
        self.table: CatalogTable = catalog_table(
            lake_location, partition_paths, settings.glue_database, settings.glue_table
        )
        self.added: list[str] = []
        self.error: str | None = None  # the last failure, while days are pending
        self._registered = False
        self._known: set[str] = set()
        self._pending: set[str] = set()
        self._queue: queue.Queue[set[str] | None] = queue.Queue()
        self._lock = threading.Lock()  # `committed` runs on the lake's commit thread
        self._register()
        self._thread = threading.Thread(target=self._run, name="glue-sync", daemon=True)
        self._thread.start()

    def _register(self) -> None:
        try:
            done = self.catalog.register(self.table)
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            self.error = str(exc)
            with self._lock:
                self._pending |= set(self.table.partitions)
            return
        with self._lock:
            self._known |= set(self.table.partitions)
            self._pending -= self._known
        self._registered = True
        self.error = None
        self.added += done.added

    def committed(self, days: set[str]) -> None:
        """The days (`2019-11-01`) a commit wrote; returns at once."""
        with self._lock:
            new = days - self._known
        if new:
            self._queue.put(new)

    def _run(self) -> None:
        while True:
            days = self._queue.get()
            if days is None:
                return
            self._add(days)

    def _add(self, days: set[str]) -> None:
        if not self._registered:  # Glue failed at start: the table first, then the days
            self._register()
            if not self._registered:
                with self._lock:
                    self._pending |= days
                return
        with self._lock:
            wanted = sorted((days | self._pending) - self._known)
        if not wanted:
            return
        try:
            self.catalog.add_partitions(self.table, wanted)
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            self.error = str(exc)
            with self._lock:
                self._pending |= set(wanted)
            return
        with self._lock:
            self._known |= set(wanted)
            self._pending -= set(wanted)
        self.added += wanted
        self.error = None

    def close(self) -> list[str]:
        """Wait for the queue, try what is pending once more; the days still missing."""
        self._queue.put(None)
        self._thread.join()
        self._add(set())
        return sorted(self._pending)
