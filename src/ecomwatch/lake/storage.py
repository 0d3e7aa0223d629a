"""Where a lake lives: a local directory or `s3://bucket/prefix`, through pyarrow's filesystems.

S3 settings come from the usual AWS environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL for an S3-compatible
server. On S3 a file appears whole when its single PUT completes, so `write_atomic` needs no
rename there; locally it writes a temporary file, fsyncs and renames.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    fs: pafs.FileSystem
    root: str  # path inside fs, without a trailing slash
    uri: str  # as the user gave it

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def local_path(self, *parts: str) -> Path:
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return bytes(f.read())

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Readers see the whole file or none of it."""
        target = self.path(relative)
        if not self.is_local:
            with self.fs.open_output_stream(target) as f:
                f.write(data)
            return
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).with_name(f".{Path(target).name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(Path(target).parent)

    def list_files(self, relative: str = "", *, recursive: bool = False) -> list[str]:
        """Paths relative to the root of the files under `relative` (none if it is missing)."""
        base = self.path(relative) if relative else self.root
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=recursive)
        prefix = self.root.rstrip("/") + "/"
        return sorted(
            info.path[len(prefix) :] if info.path.startswith(prefix) else info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def list_dirs(self, relative: str = "") -> list[str]:
        base = self.path(relative) if relative else self.root
        selector = pafs.FileSelector(base, allow_not_found=True)
        return sorted(
            posixpath.basename(i.path)
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.Directory
        )

    def size(self, relative: str) -> int:
        return int(self.fs.get_file_info(self.path(relative)).size or 0)

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(relative))

    def makedirs(self, relative: str) -> None:
        self.fs.create_dir(self.path(relative), recursive=True)

    def duckdb_path(self, relative: str) -> str:
        """A path DuckDB can read: a local path, or s3://bucket/key."""
        return self.path(relative) if self.is_local else "s3://" + self.path(relative)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, object] = {"region": region}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        options.update(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
        )
    return pafs.S3FileSystem(**options)  # type: ignore[arg-type]


def locate(uri: str | Path) -> Location:
    text = str(uri)
    if text.startswith("s3://"):
        return Location(s3_filesystem(), text[len("s3://") :].rstrip("/"), text)
    return Location(pafs.LocalFileSystem(), str(Path(text).absolute()), text)
