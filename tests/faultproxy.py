"""A loopback TCP proxy that adds latency and injects faults (there is no `tc netem` here).

It runs its own asyncio loop in a thread, so synchronous clients (boto3) and other event loops
can use it alike.  Latency is added per direction without limiting bandwidth: every chunk is
forwarded ``delay`` seconds after it arrived, in order.  Faults are drawn per HTTP request (the
proxy follows request framing by Content-Length) with a seeded RNG: ``reset`` (RST after some
bytes of the response), ``reset_upload`` (RST mid-request body), ``stall`` (stop forwarding for a
while, then close), ``truncate`` (close cleanly mid-response), ``http503`` and ``http500`` (answer
the request with an S3 error instead of forwarding it).  Only 127.0.0.1 is
ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

FAULTS = ("reset", "reset_upload", "stall", "truncate", "http503", "http500")


@dataclass
class FaultProxy:
    upstream_port: int
    delay: float = 0.0  # one-way, seconds (RTT = 2 × delay)
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    stall_seconds: float = 4.0
    max_fault_offset: int = 256 * 1024
    injected: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    #: every request line forwarded or answered (``GET /bucket/key?x=1 HTTP/1.1``), in order
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _decide(self) -> tuple[str | None, int]:
        with self._lock:
            if self._rng.random() >= self.fault_rate:
                return None, 0
            fault = self._rng.choice(self.faults)
            self.injected[fault] += 1
            return fault, self._rng.randrange(1, self.max_fault_offset)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        armed: dict[str, object] = {}  # a response fault drawn by the request side
        pipes = [
            asyncio.create_task(self._requests(client_r, up_w, client_w, armed)),
            asyncio.create_task(self._responses(up_r, client_w, up_w, armed)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is stopping: close quietly
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for writer in (client_w, up_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _delayed_writer(
        self, writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes | None]]
    ) -> None:
        """Write queued chunks ``delay`` after they arrived, in order; None ends the stream."""
        while True:
            arrived, data = await queue.get()
            wait = arrived + self.delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                return
            writer.write(data)
            await writer.drain()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        armed: dict[str, object],
    ) -> None:
        """Forward HTTP/1.1 requests one by one, drawing a fault for each."""
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        writing = asyncio.create_task(self._delayed_writer(upstream, queue))
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                length = _content_length(head)
                with self._lock:
                    self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
                fault, offset = self._decide()
                if fault in ("http503", "http500"):
                    with contextlib.suppress(Exception):
                        await reader.readexactly(length)
                    await queue.put((time.monotonic(), None))
                    await writing
                    await self._answer_error(client, fault)
                    return
                if fault in ("reset", "stall", "truncate"):
                    armed.update(fault=fault, offset=offset)
                await queue.put((time.monotonic(), head))
                remaining = length
                sent = 0
                while remaining > 0:
                    data = await reader.read(min(65536, remaining))
                    if not data:
                        return
                    remaining -= len(data)
                    if fault == "reset_upload" and sent + len(data) >= offset:
                        await queue.put((time.monotonic(), data[: max(0, offset - sent)]))
                        await queue.put((time.monotonic(), None))
                        await writing
                        for side in (upstream, client):
                            side.transport.abort()
                        return
                    sent += len(data)
                    await queue.put((time.monotonic(), data))
        except (ConnectionError, OSError):
            return
        finally:
            if not writing.done():
                await queue.put((time.monotonic(), None))
                with contextlib.suppress(Exception):
                    await writing

    async def _responses(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        armed: dict[str, object],
    ) -> None:
        """Forward response bytes; fire a fault armed by the request side after its offset."""
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        writing = asyncio.create_task(self._delayed_writer(client, queue))
        sent = 0
        try:
            while data := await reader.read(65536):
                fault = armed.get("fault")
                if fault is not None:
                    offset = int(armed["offset"])  # type: ignore[call-overload]
                    if sent + len(data) >= offset:
                        await queue.put((time.monotonic(), data[: max(0, offset - sent)]))
                        await queue.put((time.monotonic(), None))
                        await writing
                        await self._inject(str(fault), client, upstream)
                        return
                sent += len(data)
                await queue.put((time.monotonic(), data))
            await queue.put((time.monotonic(), None))
            await writing
        except (ConnectionError, OSError):
            return
        finally:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)

    async def _inject(
        self, fault: str, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
            writer.close()
        elif fault == "truncate":
            writer.close()
        else:  # reset: abort both sides (RST)
            for side in (writer, other):
                side.transport.abort()

    async def _answer_error(self, writer: asyncio.StreamWriter, fault: str) -> None:
        status, code = (
            ("503 Slow Down", "SlowDown")
            if fault == "http503"
            else ("500 Internal Server Error", "InternalError")
        )
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        if self.delay:
            await asyncio.sleep(self.delay)
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}"
            f"\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0
