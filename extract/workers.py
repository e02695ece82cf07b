"""Decoding in worker processes, with a time limit per video.

``decode_in_workers(fn, tasks, workers, timeout)`` runs ``fn(task)`` for each task in
``workers`` processes and yields ``(index, result)`` in task order. It is the one place
where extraction and ``predict`` turn files into frames (each with its own ``fn``, which
records a bad file as a reason instead of raising).

A worker runs one task at a time, so the pool knows which video each worker is on and
for how long:

* a task that runs longer than ``timeout`` seconds (a file that hangs the decoder: a
  FIFO swapped in for a video, a network mount that stopped answering) gets
  ``{"reason": "decode timed out after N s"}``; its worker is killed and replaced. The time
  of a new worker's first task runs from when the worker says it has started (a spawned
  one imports torch first);
* a worker that dies or hangs (STARTUP_LIMIT seconds) before it has started is replaced
  and its task handed to the new one, not recorded as failed: no video is to blame.
  STARTUP_FAILURES in a row raise WorkersCannotStart (a spawned worker re-imports the
  calling script: one without an ``if __name__ == "__main__":`` guard starts the job again
  in every worker, which fails);
* a worker that dies (the decoder crashed the process) gives its task
  ``{"reason": "decoder process died (...)"}`` and is replaced;
* the next videos keep going either way. At most ``workers * prefetch`` results wait
  to be taken, so memory stays bounded.

``workers=0`` runs ``fn`` in the calling process: no time limit is possible there.

Workers are forked (on Linux): ``fn`` is inherited, not pickled, so it may hold a model
or other state. ``start="spawn"`` starts each worker as a fresh interpreter instead (``fn``
is then pickled): a process forked from one that has used CUDA cannot use CUDA, so
workers that decode on NVDEC are spawned. Results are pickled back (numpy arrays and
tensors by value).
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from vidstore.extract.video import mark_decode_worker, unexpected_reason


def timed_out_reason(seconds: float) -> str:
    return f"decode timed out after {seconds:g} s"


START_METHODS = ("fork", "spawn")
_READY = pickle.dumps((-1, None))  # a worker's first message: started, the clock of its task may run
STARTUP_LIMIT = 60.0  # seconds a new worker may take to start (a spawned one imports torch), at least
STARTUP_FAILURES = 3  # workers in a row that die or hang before they start: the pool gives up


class WorkersCannotStart(RuntimeError):
    """Decode workers die or hang before they start, one after another: no video is to blame."""


def _context(start: str | None):
    if start is not None and start not in START_METHODS:
        raise ValueError(f"start={start!r}: use one of {', '.join(START_METHODS)}")
    return mp.get_context(start or ("fork" if sys.platform.startswith("linux") else "spawn"))


# What a spawned worker runs first (builtins.exec, with ROOT, FN and CONN as its globals):
# a fresh interpreter must load the parent's vidstore, the same folder, before it can
# unpickle fn. An installed vidstore imports as usual; a checkout (python cli.py, the tests,
# the benchmarks) is made the vidstore package the way they do it, by importing its cli.py.
_SPAWNED_WORKER = """
import pickle, sys
from pathlib import Path
try:
    import vidstore
    same = Path(vidstore.__file__).resolve().parent == Path(ROOT)
except ImportError:
    same = False
if not same:
    sys.path.insert(0, ROOT)
    import cli
from vidstore.extract.workers import _worker_main
_worker_main(pickle.loads(FN), CONN)
"""


def _worker_main(fn: Callable[[Any], Any], conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    mark_decode_worker()  # nothing else uses CUDA here: NVDEC may share the GPU's primary context
    faulthandler.disable()  # a decoder that crashes is recorded by the pool, not dumped on the user's terminal
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        conn.send_bytes(_READY)
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, task = message
        try:
            result = fn(task)
        except Exception as err:  # fn records bad files itself; anything else is this task's failure
            result = {"reason": unexpected_reason(err)}
        try:
            conn.send_bytes(pickle.dumps((index, result), protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, fn: Callable[[Any], Any], ctx, name: str):
        self.conn, child = ctx.Pipe(duplex=True)
        if ctx.get_start_method() == "fork":
            target, args = _worker_main, (fn, child)
        else:
            root = str(Path(sys.modules["vidstore"].__file__).resolve().parent)
            target, args = exec, (_SPAWNED_WORKER, {"ROOT": root, "FN": pickle.dumps(fn), "CONN": child})
        self.process = ctx.Process(target=target, args=args, name=name, daemon=True)
        self.process.start()
        child.close()
        self.task: int | None = None  # index of the task it is on
        self.payload: Any = None  # that task, handed again to a replacement if this one never starts
        self.started = 0.0
        self.ready = False  # has said it started: until then its task's limit is at least STARTUP_LIMIT

    def give(self, index: int, task: Any) -> None:
        self.task, self.payload, self.started = index, task, time.monotonic()
        self.conn.send((index, task))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def decode_in_workers(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int,
    *,
    timeout: float | None = None,
    prefetch: int = 2,
    name: str = "decode",
    start: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(index, fn(task))`` for each task, in task order; see the module docstring.

    ``tasks`` is consumed lazily (only as far as the workers and the prefetch window
    need), so a caller may decide later tasks while earlier results come back. ``start``:
    how workers start, "fork" (the default on Linux) or "spawn".
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    if workers == 0:
        for index, task in enumerate(tasks):
            try:
                yield index, fn(task)
            except Exception as err:
                yield index, {"reason": unexpected_reason(err)}
        return
    yield from _Pool(fn, workers, timeout, max(1, prefetch), name, start).run(tasks)


class _Pool:
    def __init__(self, fn, workers: int, timeout: float | None, prefetch: int, name: str, start: str | None = None):
        self.fn, self.n, self.timeout, self.window, self.name = fn, workers, timeout, workers * prefetch, name
        self.ctx = _context(start)
        self.workers: list[_Worker] = []
        self.spawned = 0
        self.start_failures = 0  # workers in a row that stopped before they started

    def _spawn(self) -> _Worker:
        self.spawned += 1
        return _Worker(self.fn, self.ctx, f"{self.name}-{self.spawned}")

    def run(self, tasks: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        source = enumerate(tasks)
        exhausted = False
        results: dict[int, Any] = {}
        next_out = 0
        issued = 0
        try:
            self.workers = [self._spawn() for _ in range(self.n)]
            while True:
                # hand tasks to idle workers while the window has room
                for worker in self.workers:
                    if exhausted or worker.task is not None or issued - next_out >= self.window:
                        continue
                    try:
                        index, task = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    try:
                        worker.give(index, task)
                    except (BrokenPipeError, OSError):  # it died while idle: a new one takes the task
                        at = self.workers.index(worker)
                        if worker.ready:
                            self.workers[at] = self._replace(worker)
                            self.workers[at].give(index, task)
                        else:
                            self.workers[at] = self._restart(worker, self._death_reason(worker))
                    issued += 1
                while next_out in results:
                    yield next_out, results.pop(next_out)
                    next_out += 1
                busy = [w for w in self.workers if w.task is not None]
                if exhausted and not busy and next_out == issued:
                    return
                if not busy:
                    continue
                now = time.monotonic()
                wait_for = min([0.5] + [w.started + self._limit(w) - now for w in busy if self._limit(w)])
                wait_for = max(0.0, wait_for)
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_for)
                now = time.monotonic()
                for i, worker in enumerate(self.workers):
                    if worker.task is None:
                        continue
                    if worker.conn in ready or worker.conn.poll():
                        try:
                            index, result = pickle.loads(worker.conn.recv_bytes())
                        except (EOFError, OSError):
                            self.workers[i] = self._died(worker, results)
                            continue
                        if index == -1:  # started: its task's time runs from now
                            worker.ready, worker.started = True, now
                            self.start_failures = 0
                            continue
                        worker.task = None
                        results[index] = result
                    elif worker.process.sentinel in ready or not worker.process.is_alive():
                        self.workers[i] = self._died(worker, results)
                    elif self._limit(worker) and now - worker.started >= self._limit(worker):
                        if not worker.ready:
                            self.workers[i] = self._restart(worker, f"did not start within {self._limit(worker):g} s")
                            continue
                        results[worker.task] = {"reason": timed_out_reason(self.timeout)}
                        self.workers[i] = self._replace(worker)
        finally:
            for worker in self.workers:
                worker.stop()
            self.workers = []

    def _limit(self, worker: _Worker) -> float | None:
        """Seconds its task may run (None: no limit); a worker that has not started yet gets
        at least STARTUP_LIMIT, with or without a time limit on videos."""
        return self.timeout if worker.ready else max(self.timeout or 0, STARTUP_LIMIT)

    def _died(self, worker: _Worker, results: dict[int, Any]) -> _Worker:
        """The worker died on its task: the video's failure once the worker had started;
        before that no video is to blame, and a new worker takes the task (_restart)."""
        if not worker.ready:
            return self._restart(worker, self._death_reason(worker))
        results[worker.task] = {"reason": self._death_reason(worker)}
        return self._replace(worker)

    def _restart(self, worker: _Worker, why: str) -> _Worker:
        """A worker that died or hung before it started: a new one takes its task, which is
        not recorded as failed. STARTUP_FAILURES in a row stop the pool with one message."""
        self.start_failures += 1
        if self.start_failures >= STARTUP_FAILURES:
            worker.kill()
            hint = ""
            if self.ctx.get_start_method() != "fork" and why.startswith("decoder process died"):
                hint = ("; spawned workers (extract.decoder=nvdec) start by importing the calling script: "
                        "a script that runs extraction must do it under if __name__ == '__main__':")
            raise WorkersCannotStart(f"{self.name} workers stop before they start ({self.start_failures} in a row, the last: {why}){hint}")
        new = self._replace(worker)
        new.give(worker.task, worker.payload)
        return new

    def _death_reason(self, worker: _Worker) -> str:
        worker.process.join(timeout=1)
        code = worker.process.exitcode
        if code is not None and code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
            return f"decoder process died ({what})"
        return f"decoder process died (exit code {code})"

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        return self._spawn()
