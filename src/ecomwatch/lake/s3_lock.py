"""One writer per table on S3: a lock object created with a conditional PUT (If-None-Match).

The object holds its owner and a lease expiry, renewed at every commit. A writer that finds a
live lock fails with a clear error; one that finds an expired lock (its writer crashed) takes it
over. Releasing deletes the object.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from ecomwatch.lake.base import LakeError
from ecomwatch.lake.storage import Location

LEASE_SECONDS = 15 * 60


class S3Lock:
    def __init__(self, loc: Location, relative: str, *, lease_s: float = LEASE_SECONDS) -> None:
        import boto3

        bucket, _, prefix = loc.root.partition("/")
        self.bucket = bucket
        self.key = f"{prefix}/{relative}" if prefix else relative
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client: Any = boto3.client("s3")
        self.uri = f"s3://{bucket}/{self.key}"

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.lease_s}).encode()

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        for _ in range(2):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
                )
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                    raise LakeError(f"cannot create the writer lock {self.uri}: {exc}") from exc
            holder = self._holder()
            if holder is not None and holder.get("expires", 0) > time.time():
                raise LakeError(
                    f"another writer ({holder.get('owner')}) holds {self.uri} until "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(holder['expires']))}; "
                    "wait for it to finish"
                )
            # The lease ran out: its writer is gone. Take the lock over.
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
        raise LakeError(f"could not take the writer lock {self.uri}; try again")

    def _holder(self) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
            holder: dict[str, Any] = json.loads(body)
            return holder
        except (ClientError, ValueError):
            return None

    def renew(self) -> None:
        holder = self._holder()
        if holder is None or holder.get("owner") != self.owner:
            raise LakeError(f"lost the writer lock {self.uri} (its lease expired); stop and rerun")
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body())

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("owner") == self.owner:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
