"""Jupyter kernels for job runs, owned by one Omega (a part of its context).

Every run gets a fresh kernel in a private temporary folder (its working
directory, and the home of its IPC sockets, so no TCP port is opened), runs
the notebook with nbclient and stops the kernel: no state leaks from one run
into the next. All kernel work of an Omega happens on one event loop in a
thread of its own, so runs may be started from any thread, including one
that already runs an event loop (a Jupyter notebook calling a job locally).

With ``spares > 0`` (``OMOPS_KERNEL_POOL=n``) up to ``n`` kernels per kernel
name and environment are started ahead and handed to the next runs, each
used once: a run then skips the kernel's start-up (most of a short run's
time) while keeping a fresh kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omops.errors import ConfigError, InvalidData, PluginError

__all__ = ["KERNEL_POOL_VARIABLE", "Executed", "Kernels", "kernels_of"]

KERNEL_POOL_VARIABLE = "OMOPS_KERNEL_POOL"
#: Seconds a kernel may take to start and answer.
STARTUP_TIMEOUT = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_Key = tuple[str, tuple[tuple[str, str], ...]]


def plain(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


@dataclass
class Executed:
    """How a notebook run ended.

    Attributes
    ----------
    error : dict or None
        ``None`` when every cell ran; else ``{cell, ename, evalue, traceback,
        source}``: the index of the cell that failed (in the executed
        notebook), the error's type and message, the traceback as plain text
        and the first lines of the cell.
    pooled : bool
        Whether the kernel was started ahead (``OMOPS_KERNEL_POOL``).
    """

    error: dict[str, Any] | None = None
    pooled: bool = False


@dataclass
class _Kernel:
    """One started kernel and its private folder."""

    manager: Any
    folder: str
    key: _Key
    started: asyncio.Future | None = field(default=None, repr=False)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # a dead kernel has nothing left to stop
            await self.manager.shutdown_kernel(now=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _pool_size() -> int:
    text = os.environ.get(KERNEL_POOL_VARIABLE, "0").strip() or "0"
    try:
        size = int(text)
    except ValueError:
        size = -1
    if not 0 <= size <= 64:
        raise ConfigError(
            f"{KERNEL_POOL_VARIABLE} must be a number of kernels from 0 (off) to 64, not {text!r}"
        )
    return size


def _imports() -> tuple[Any, Any, Any]:
    try:
        from jupyter_client.kernelspec import NoSuchKernel
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient
    except ImportError:
        raise PluginError("running notebooks needs nbclient: pip install 'omops[jobs]'") from None
    return AsyncKernelManager, NotebookClient, NoSuchKernel


class Kernels:
    """Starts, runs and stops the kernels of one Omega's job runs.

    Parameters
    ----------
    spares : int, optional
        Kernels kept started ahead per kernel name and environment; by
        default ``OMOPS_KERNEL_POOL`` (0: none).
    """

    def __init__(self, spares: int | None = None) -> None:
        self.spares = _pool_size() if spares is None else spares
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[_Kernel]] = {}  # touched on the loop only
        self._starting: dict[_Key, int] = {}
        self._closed = False
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        return f"<Kernels spares={self.spares} running={self._thread is not None}>"

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise ConfigError("this Omega was closed; make a new one to run jobs")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="omops-kernels", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                # An Omega dropped without close() still stops its kernels and thread.
                self._finalizer = weakref.finalize(self, _stop, loop, thread, self._idle)
            return self._loop

    def run(
        self,
        notebook: Any,
        *,
        kernel_name: str,
        env: Mapping[str, str],
        timeout: float | None,
    ) -> Executed:
        """Run every cell of ``notebook`` (changed in place) in a fresh kernel.

        Parameters
        ----------
        notebook : nbformat.NotebookNode
        kernel_name : str
            The kernel spec, e.g. ``python3``.
        env : mapping
            The kernel's environment.
        timeout : float or None
            Seconds one cell may run; None for no limit.
        """
        _imports()
        key: _Key = (kernel_name, tuple(sorted(env.items())))
        work = self._run(notebook, key, timeout)
        return asyncio.run_coroutine_threadsafe(work, self._running_loop()).result()

    async def _run(self, notebook: Any, key: _Key, timeout: float | None) -> Executed:
        kernel, pooled = self._take(key), True
        if kernel is None:
            kernel, pooled = await self._start(key), False
        self._refill(key)
        try:
            executed = await _execute(kernel, notebook, timeout)
        finally:
            await kernel.stop()
        executed.pooled = pooled
        return executed

    def _take(self, key: _Key) -> _Kernel | None:
        idle = self._idle.get(key) or []
        while idle:
            kernel = idle.pop(0)
            if kernel.manager.has_kernel:
                return kernel
        return None

    def _refill(self, key: _Key) -> None:
        """Start kernels in the background until ``spares`` are ready or starting."""
        missing = self.spares - len(self._idle.get(key, ())) - self._starting.get(key, 0)
        for _ in range(max(missing, 0)):
            self._starting[key] = self._starting.get(key, 0) + 1
            asyncio.get_running_loop().create_task(self._start_spare(key))

    async def _start_spare(self, key: _Key) -> None:
        try:
            kernel = await self._start(key)
        except Exception:  # noqa: BLE001 - a run starts its own kernel then, and reports why
            return
        finally:
            self._starting[key] -= 1
        if self._closed:
            await kernel.stop()
        else:
            self._idle.setdefault(key, []).append(kernel)

    async def _start(self, key: _Key) -> _Kernel:
        manager_class, _client, no_such_kernel = _imports()
        kernel_name, env = key[0], dict(key[1])
        folder = tempfile.mkdtemp(prefix="omops-kernel-")
        manager = manager_class(
            kernel_name=kernel_name,
            transport="ipc",  # sockets in the private folder: no port, no other user
            connection_file=os.path.join(folder, "kernel.json"),
        )
        kernel = _Kernel(manager, folder, key)
        try:
            await manager.start_kernel(
                env=env, cwd=folder, extra_arguments=["--HistoryManager.hist_file=:memory:"]
            )
        except no_such_kernel:
            await kernel.stop()
            raise InvalidData(
                f"the notebook asks for kernel {kernel_name!r}, which is not installed where "
                "the job runs; install it there or change the notebook's kernel (python3)"
            ) from None
        except BaseException:
            await kernel.stop()
            raise
        return kernel

    def close(self) -> None:
        """Stop the spare kernels and the loop thread."""
        with self._lock:
            self._closed = True
            finalizer, self._finalizer = self._finalizer, None
            self._loop = self._thread = None
        if finalizer is not None:
            finalizer()


def _stop(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, idle: dict[_Key, list[_Kernel]]
) -> None:
    """Stop the spare kernels in ``idle``, then the loop and its thread."""

    async def stop_all() -> None:
        kernels = [k for found in idle.values() for k in found]
        idle.clear()
        await asyncio.gather(*(k.stop() for k in kernels))

    if loop.is_closed() or not thread.is_alive():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(stop_all(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        loop.close()


async def _execute(kernel: _Kernel, notebook: Any, timeout: float | None) -> Executed:
    """Run the cells; a failing cell, a timeout or a dead kernel become ``Executed.error``."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    _manager, client_class, _ = _imports()
    current = {"cell": None}

    def on_cell_execute(cell: Any, cell_index: int) -> None:
        current["cell"] = cell_index

    client = client_class(
        notebook,
        km=kernel.manager,
        timeout=None if not timeout else int(max(timeout, 1)),
        startup_timeout=int(STARTUP_TIMEOUT),
        kernel_name=kernel.key[0],
        resources={"metadata": {"path": kernel.folder}},
        on_cell_execute=on_cell_execute,
    )
    try:
        await client.async_execute()
        return Executed()
    except CellExecutionError as exc:
        return Executed(_error(notebook, current["cell"], exc.ename, exc.evalue, exc.traceback))
    except CellTimeoutError:
        message = f"the cell did not finish within {timeout:g} s (the job's cell timeout)"
        return Executed(_error(notebook, current["cell"], "CellTimeoutError", message, ""))
    except DeadKernelError:
        code = _exit_code(kernel)
        how = f" (exit status {code})" if code is not None else ""
        message = f"the kernel died while running this cell{how}"
        return Executed(_error(notebook, current["cell"], "DeadKernelError", message, ""))
    except RuntimeError as exc:  # the kernel died before answering, or never started
        code = _exit_code(kernel)
        how = f" (exit status {code})" if code is not None else ""
        message = f"the kernel did not start or answer{how}: {exc}"
        return Executed(_error(notebook, None, "DeadKernelError", message, ""))
    finally:
        if client.kc is not None:
            client.kc.stop_channels()


def _exit_code(kernel: _Kernel) -> int | None:
    process = getattr(getattr(kernel.manager, "provisioner", None), "process", None)
    return None if process is None else process.poll()


def _error(
    notebook: Any, cell: int | None, ename: str, evalue: str, traceback: str
) -> dict[str, Any]:
    source = None
    if cell is not None and 0 <= cell < len(notebook.cells):
        source = "\n".join(notebook.cells[cell].source.splitlines()[:5])
    return {
        "cell": cell,
        "ename": ename,
        "evalue": plain(str(evalue)),
        "traceback": plain(traceback)[-8000:],
        "source": source,
    }


def kernels_of(om: Any) -> Kernels:
    """The kernels part of ``om``'s context (made on first use)."""
    return om.context.part("jobs.kernels", Kernels)
