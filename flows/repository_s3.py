"""The deployment repository in S3, through the ``s3-storage`` tools (so every read and
write passes the guard chain: role, audit, breaker, retry).

Object layout under ``prefix`` (default ``codebus/flows/``)::

    records/{id}.json                      the summary; replaced by compare-and-set
    journal/{id}/{rev:010d}.json           one per rev; written with If-None-Match: *
    index/{kind}/{app}/{environment}/{created}_{id}
                                           empty marker; listing by prefix and time

The index key carries what ``list`` filters on that never changes (kind, app,
environment, creation time), so those filters are S3 prefix listings; ``phase`` changes
and is read from the summaries of the candidates. Path parts are percent-encoded, so an
app name cannot reach outside its prefix.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from flows.repository import (
    FlowRepository,
    JournalConflict,
    RepositoryError,
    RepositoryUnavailable,
)
from schemas.workflows import FlowRecord, JournalRecord, RecordFilter
from tools.errors import CircuitOpen, ToolError, ToolFailed, ToolTransientError
from tools.toolbox import ToolCaller

UPLOAD = "s3-storage.s3_upload_file"
DOWNLOAD = "s3-storage.s3_download_file"
LIST = "s3-storage.s3_list_objects"
#: Compare-and-set rounds on one summary before giving up (each lost round means
#: another writer stored a newer summary in between).
CAS_ROUNDS = 8
_NONE = "-"  # path part of a missing app or environment
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"  # fixed width: keys sort by time


def _part(value: str | None) -> str:
    return _NONE if value is None else quote(value, safe="")


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_TIME_FORMAT)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()


class S3Repository:
    """Flow records in ``bucket`` through ``tools`` (a toolbox or a role view of one)."""

    def __init__(self, tools: ToolCaller, bucket: str, *, prefix: str = "codebus/flows/") -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError("prefix must be empty or end with '/'")
        self.tools = tools
        self.bucket = bucket
        self.prefix = prefix

    # ---- keys -----------------------------------------------------------------------
    def summary_key(self, flow_id: str) -> str:
        """Where the summary of ``flow_id`` lives."""
        return f"{self.prefix}records/{flow_id}.json"

    def journal_key(self, flow_id: str, rev: int) -> str:
        """Where journal record ``rev`` of ``flow_id`` lives (the rev is in the key)."""
        return f"{self.prefix}journal/{flow_id}/{rev:010d}.json"

    def index_key(self, record: FlowRecord) -> str:
        """The index marker of ``record``."""
        return (
            f"{self.prefix}index/{record.kind}/{_part(record.app)}/"
            f"{_part(record.environment)}/{_stamp(record.created_at)}_{record.id}"
        )

    # ---- writes ---------------------------------------------------------------------
    async def save(self, record: FlowRecord) -> bool:
        """See :meth:`flows.repository.FlowRepository.save`: compare-and-set on the
        stored summary's ETag, so a concurrent writer's later rev is never replaced."""
        key = self.summary_key(record.id)
        body = record.model_dump_json().encode()
        for _ in range(CAS_ROUNDS):
            found = await self._read(key, flow_id=record.id)
            if found is not None:
                current = FlowRecord.model_validate_json(found[0])
                if current.rev > record.rev:
                    return False
                condition = {"if_match": found[1]}
            else:
                condition = {"if_none_match": "*"}
                await self._put_once(self.index_key(record), b"", flow_id=record.id)
            if await self._put(key, body, condition, flow_id=record.id):
                return True
        raise RepositoryUnavailable(
            f"flow {record.id}: summary changed {CAS_ROUNDS} times while saving", flow_id=record.id
        )

    async def append(self, entry: JournalRecord) -> bool:
        """See :meth:`flows.repository.FlowRepository.append`."""
        key = self.journal_key(entry.flow_id, entry.rev)
        body = entry.model_dump_json().encode()
        if await self._put(key, body, {"if_none_match": "*"}, flow_id=entry.flow_id):
            return True
        found = await self._read(key, flow_id=entry.flow_id)
        if found is not None and JournalRecord.model_validate_json(found[0]) == entry:
            return False
        raise JournalConflict(
            f"flow {entry.flow_id}: journal rev {entry.rev} exists with other content",
            flow_id=entry.flow_id,
        )

    # ---- reads ----------------------------------------------------------------------
    async def get(self, flow_id: str) -> FlowRecord | None:
        """See :meth:`flows.repository.FlowRepository.get`."""
        found = await self._read(self.summary_key(flow_id), flow_id=flow_id)
        return None if found is None else FlowRecord.model_validate_json(found[0])

    async def journal(self, flow_id: str) -> list[JournalRecord]:
        """See :meth:`flows.repository.FlowRepository.journal`."""
        records = []
        async for key in self._keys(f"{self.prefix}journal/{flow_id}/"):
            found = await self._read(key, flow_id=flow_id)
            if found is not None:
                records.append(JournalRecord.model_validate_json(found[0]))
        return sorted(records, key=lambda r: r.rev)

    async def list(self, filters: RecordFilter) -> list[FlowRecord]:
        """See :meth:`flows.repository.FlowRepository.list`."""
        prefix = f"{self.prefix}index/"
        # The longest prefix the leading filters give; later filters are checked per key.
        for part in (filters.kind, filters.app, filters.environment):
            if part is None:
                break
            prefix += f"{_part(part)}/"
        candidates: list[tuple[float, str]] = []
        async for key in self._keys(prefix):
            parsed = self._parse_index(key)
            if parsed is None:
                continue
            kind, app, environment, created, flow_id = parsed
            if (
                (filters.kind and kind != filters.kind)
                or (filters.app and app != filters.app)
                or (filters.environment and environment != filters.environment)
                or (filters.since is not None and created < filters.since)
                or (filters.until is not None and created >= filters.until)
            ):
                continue
            candidates.append((created, flow_id))
        candidates.sort(reverse=True)
        chosen: list[FlowRecord] = []
        for _, flow_id in candidates:
            record = await self.get(flow_id)
            if record is not None and filters.matches(record):
                chosen.append(record)
                if len(chosen) >= filters.limit:
                    break
        return chosen

    def _parse_index(self, key: str) -> tuple[str, str | None, str | None, float, str] | None:
        parts = key[len(self.prefix) :].split("/")
        if len(parts) != 5 or parts[0] != "index" or "_" not in parts[4]:
            return None
        stamp, flow_id = parts[4].split("_", 1)
        try:
            created = _epoch(stamp)
        except ValueError:
            return None

        def value(part: str) -> str | None:
            return None if part == _NONE else unquote(part)

        return parts[1], value(parts[2]), value(parts[3]), created, flow_id

    # ---- the tool calls -------------------------------------------------------------
    async def _call(self, name: str, args: dict[str, Any], flow_id: str | None) -> Any:
        try:
            return await self.tools.call_tool(name, args)
        except (ToolTransientError, CircuitOpen) as exc:
            raise RepositoryUnavailable(f"{name}: {exc}", flow_id=flow_id) from exc
        except ToolFailed:
            raise  # the callers decide what 404 and 412 mean
        except ToolError as exc:
            raise RepositoryError(f"{name}: {exc}", flow_id=flow_id) from exc

    async def _put(self, key: str, body: bytes, condition: dict[str, str], *, flow_id: str) -> bool:
        """Upload ``body``; False when the condition did not hold (412, or a 404 for an
        If-Match whose object was deleted meanwhile)."""
        with tempfile.TemporaryDirectory(prefix="codebus-repo-") as tmp:
            path = os.path.join(tmp, "body")
            await asyncio.to_thread(Path(path).write_bytes, body)
            args = {
                "file_path": path,
                "bucket": self.bucket,
                "key": key,
                "content_type": "application/json",
                **condition,
            }
            try:
                await self._call(UPLOAD, args, flow_id)
            except ToolFailed as exc:
                if exc.status == 412 or (exc.status == 404 and "if_match" in condition):
                    return False
                raise RepositoryError(f"{UPLOAD} {key}: {exc}", flow_id=flow_id) from exc
        return True

    async def _put_once(self, key: str, body: bytes, *, flow_id: str) -> None:
        await self._put(key, body, {"if_none_match": "*"}, flow_id=flow_id)

    async def _read(self, key: str, *, flow_id: str | None) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None if there is no such key."""
        with tempfile.TemporaryDirectory(prefix="codebus-repo-") as tmp:
            path = os.path.join(tmp, "body")
            args = {"bucket": self.bucket, "key": key, "local_path": path}
            try:
                result = await self._call(DOWNLOAD, args, flow_id)
            except ToolFailed as exc:
                if exc.status == 404:
                    return None
                raise RepositoryError(f"{DOWNLOAD} {key}: {exc}", flow_id=flow_id) from exc
            return await asyncio.to_thread(Path(path).read_bytes), str(result.etag)

    async def _keys(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            args: dict[str, Any] = {"bucket": self.bucket, "prefix": prefix, "max_keys": 1000}
            if token:
                args["continuation_token"] = token
            try:
                page = await self._call(LIST, args, None)
            except ToolFailed as exc:
                raise RepositoryError(f"{LIST} {prefix}: {exc}") from exc
            for item in page.objects:
                yield item.key
            token = page.next_continuation_token
            if not page.is_truncated or not token:
                return


def repository_from(deps: Mapping[str, Any]) -> FlowRepository | None:
    """The repository a worker's handlers write to: an injected one (``flow_repository``:
    embedded mode, tests), else S3 through the unit's toolbox when ``flows_bucket``
    (``CODEBUS_FLOWS_BUCKET``) is set, else none."""
    repo: FlowRepository | None = deps.get("flow_repository")
    if repo is None and deps.get("flows_bucket"):
        repo = S3Repository(deps["toolbox"], str(deps["flows_bucket"]))
    return repo
