"""Read an image's package inventory through the Docker Engine API, without unpacking it.

A container is created from the image (never started, no network) and its flattened
filesystem streamed from ``GET /containers/{id}/export``. The flattened export already
applies layer whiteouts, unlike ``docker image save``. The tar stream is parsed by
:mod:`tarfile` in stream mode in a worker thread; only the few files the inventory
needs are read into memory, everything else is skipped as it flows past. The container
is removed afterwards whatever happens; each carries the label
``io.codebus.purpose=security-scan-export`` so that an operator can prune any left by a
crashed process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tarfile
import uuid
from typing import Any

import aiodocker
import aiohttp

from tools.scanner.inventory import Inventory, add_file, normalize_member_path, wanted

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024


class _LoopStreamReader:
    """A blocking file object over an aiohttp stream, for a thread beside the loop.

    ``read`` schedules the stream read on the event loop and waits for it, so the loop
    stays free while :mod:`tarfile` parses in the thread.
    """

    def __init__(
        self,
        stream: aiohttp.StreamReader,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
    ) -> None:
        self._stream = stream
        self._loop = loop
        self._timeout = read_timeout
        self._buffer = b""
        self._pending: concurrent.futures.Future[bytes] | None = None
        self._closed = False
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at end of stream)."""
        if self._closed:
            raise OSError("export stream closed")
        if not self._buffer:
            self._pending = asyncio.run_coroutine_threadsafe(
                self._stream.read(max(size, _CHUNK)), self._loop
            )
            self._buffer = self._pending.result(timeout=self._timeout)
            self.bytes_read += len(self._buffer)
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        """Stop the thread: a pending read is cancelled and later reads fail."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()


def _read_tar(fileobj: Any) -> Inventory:
    """Walk a tar stream once, feeding the files the inventory wants into it."""
    inventory = Inventory()
    with tarfile.open(fileobj=fileobj, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            path = normalize_member_path(member.name)
            cap = wanted(path)
            if not cap:
                continue
            if member.size > cap:
                log.warning("skipping %s: %d bytes is over the %d byte cap", path, member.size, cap)
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                add_file(inventory, path, handle.read())
    return inventory


async def read_image_inventory(
    docker: aiodocker.Docker, image: str, *, read_timeout: float = 60.0
) -> Inventory:
    """The package inventory of ``image``; raises ``aiodocker.DockerError`` from the engine."""
    # A name of our own, so that the container can be removed even when the scan is
    # cancelled after the engine created it but before its id reached us.
    name = f"codebus-scan-{uuid.uuid4().hex[:16]}"
    try:
        await docker.containers.create(
            config={
                "Image": image,
                # Never started: the entrypoint only has to satisfy "create" for images
                # without a command (FROM scratch).
                "Entrypoint": ["/codebus-scanner-never-runs"],
                "Cmd": [],
                "NetworkDisabled": True,
                "Labels": {"io.codebus.purpose": "security-scan-export"},
            },
            name=name,
        )
        return await _export_inventory(docker, name, image, read_timeout)
    finally:
        # Shielded so that a cancelled scan still removes its container.
        await asyncio.shield(_remove(docker.containers.container(name)))


async def _export_inventory(
    docker: aiodocker.Docker, container: str, image: str, read_timeout: float
) -> Inventory:
    # aiodocker has no container export helper; _query streams the raw response.
    async with docker._query(
        f"containers/{container}/export",
        timeout=aiohttp.ClientTimeout(total=None, sock_read=read_timeout),
    ) as response:
        reader = _LoopStreamReader(response.content, asyncio.get_running_loop(), read_timeout)
        try:
            inventory = await asyncio.to_thread(_read_tar, reader)
        finally:
            # On cancellation this unblocks the parsing thread, which then ends.
            reader.close()
            response.close()
    log.debug("read %d bytes of the export of %s", reader.bytes_read, image)
    return inventory


async def _remove(container: Any) -> None:
    try:
        await container.delete(force=True)
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            log.warning("could not remove scan container %s: %s", container.id, exc)
