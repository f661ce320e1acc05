"""One worker decoding the requests one at a time (the model is not shared between threads),
behind a bounded queue: a request that finds the queue full is refused at once (503 with
``Retry-After``) instead of waiting without end.

A job owns its request's temporary folder once it is queued: the worker removes it when the
job is done, failed or dropped (its client gone), before the answer is handed back."""

import asyncio
import logging
import math
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Optional

from espnet.serve.errors import ApiError

log = logging.getLogger(__name__)

FIRST_GUESS_SECONDS = 5.0  # the decoding time Retry-After assumes before any request was decoded


class Job:
    """A queued request: ``work()`` runs on the worker thread; ``directory`` is removed after."""

    def __init__(self, work: Callable[[], Any], directory: str) -> None:
        self.work = work
        self.directory = directory
        self.future: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self.dropped = False  # the client went away: skip it if it has not started

    def drop(self) -> None:
        self.dropped = True

    def remove_directory(self) -> None:
        remove_folder(self.directory)


def remove_folder(path: str) -> None:
    """Remove a request's folder; a failure is logged (with its traceback), not raised: the
    request's answer does not depend on it."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("cannot remove the request folder %s", path)


class DecodeQueue:
    """A single decoding worker behind a queue of at most ``max_waiting`` jobs (the one being
    decoded not counted).

    Use inside the event loop: :meth:`start` it, :meth:`submit` jobs (await their ``future``),
    :meth:`stop` it.
    """

    def __init__(self, max_waiting: int) -> None:
        if max_waiting < 1:
            raise ValueError(f"--max-queue must be >= 1, got {max_waiting}")
        self.max_waiting = max_waiting
        self._queue: "Optional[asyncio.Queue[Job]]" = None
        self._task: "Optional[asyncio.Task]" = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self.running: Optional[Job] = None
        self._durations: Deque[float] = deque(maxlen=20)

    # ---- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_waiting)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="decode-worker")

    async def stop(self) -> None:
        """Stop taking jobs: the one being decoded finishes, the waiting ones are refused (503),
        and every request folder is removed."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        if self.running is not None:
            self._finish(self.running, error=ApiError(503, "the server is shutting down", code="shutting_down"))
        while not self._queue.empty():
            self._finish(self._queue.get_nowait(),
                         error=ApiError(503, "the server is shutting down", code="shutting_down"))
        self._task = None

    # ---- jobs -----------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def full(self) -> bool:
        return self._queue is None or self._queue.full()

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean decoding time of recent requests (5 s
        before the first) times the requests ahead, at least 1."""
        mean = sum(self._durations) / len(self._durations) if self._durations else FIRST_GUESS_SECONDS
        return max(1, math.ceil(mean * (self.waiting + (self.running is not None))))

    def busy_error(self) -> ApiError:
        seconds = self.retry_after()
        return ApiError(503, f"the server is busy: {self.waiting} requests are waiting (--max-queue "
                             f"{self.max_waiting}); retry in {seconds} s", code="queue_full",
                        headers={"Retry-After": str(seconds)})

    def submit(self, job: Job) -> Job:
        """Queue ``job`` (it owns its folder from now on); 503 when the queue is full (the
        caller still owns the folder then)."""
        if self._queue is None or self._task is None:
            raise ApiError(503, "the server is not running", code="not_running")
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise self.busy_error() from None
        return job

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            if job.dropped:
                self._finish(job)
                continue
            self.running = job
            start = time.perf_counter()
            try:
                result = await loop.run_in_executor(self._executor, job.work)
            except asyncio.CancelledError:
                raise  # stop(): the job finishes on the executor and stop() removes its folder
            except Exception as err:  # noqa: BLE001 - handed to the request, which answers with it
                self._durations.append(time.perf_counter() - start)
                self._finish(job, error=err)
            else:
                self._durations.append(time.perf_counter() - start)
                self._finish(job, result=result)
            self.running = None

    def _finish(self, job: Job, result: Any = None, error: Optional[BaseException] = None) -> None:
        job.remove_directory()
        if job.future.done():
            return
        if job.dropped:
            job.future.cancel()  # nobody waits for it
        elif error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
