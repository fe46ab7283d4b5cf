"""A quiet start for this project's commands: TensorFlow's start-up lines once, no spurious error.

:func:`prepare_command_process` runs in a process started as one of the project's commands,
``python -m fashion_keras.<command>`` (through :mod:`fashion_keras.cli`) or
``python -m serving.<command>`` (through :mod:`serving`), before TensorFlow is imported. In any
other process (a library user, a test importing a command's ``main``) it does nothing: importing
the packages changes no process-wide setting. It lives in ``serving`` because ``serving`` imports
nothing of ``fashion_keras``, and both command families need it.

What TensorFlow 2.21 does at start, and what is done about it here:

- **Its start-up lines come twice.** ``import tensorflow`` also imports
  ``tf.profiler.experimental.client``, whose extension
  ``tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so`` (90 MB) links its own copy
  of TSL and absl instead of ``libtensorflow_framework``: its static initialisers print absl's
  "All log messages before absl::InitializeLog()" preamble, the oneDNN notice and "Could not
  find cuda drivers" a second time. The commands never profile remotely, so that extension is
  loaded on its first use instead (:func:`defer_import`); the lines come once, from the runtime
  that does the work.
- **A CUDA error on every CPU-only machine.** TensorFlow's Linux wheels are CUDA builds; the
  first device listing calls ``cuInit``, which without the NVIDIA driver (``libcuda.so.1``)
  fails and is logged at ERROR level (``cuda_platform.cc: failed call to cuInit ... (303)``), and
  no setting skips the call (``CUDA_VISIBLE_DEVICES`` does not). When the driver cannot be
  loaded, :func:`list_devices_quietly` lists the devices once with stderr captured and writes
  back everything but that line; TensorFlow caches the result and never calls ``cuInit`` again.
  With a driver present nothing is filtered: a failing ``cuInit`` is then a real error.
- **TensorFlow's Python records twice.** ``import tensorflow`` gives its ``tensorflow`` logger
  its own stderr handler (the root logger has none yet), so once the command configures logging
  every record prints through both: the logger's handler is removed and records go to the
  command's handlers only (:func:`use_root_handlers`).

Nothing here raises TensorFlow's log level: its other warnings and errors still show.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import threading
import types
from collections.abc import Sequence

#: The packages whose ``python -m`` modules are this project's commands.
COMMAND_PACKAGES = ("fashion_keras", "serving")
#: The extension with a second TensorFlow runtime, loaded on first use in a command.
PROFILER_PLUGIN = "tensorflow.python.profiler.internal._pywrap_profiler_plugin"
#: The NVIDIA driver library TensorFlow's CUDA build loads (its absence: no usable GPU).
CUDA_DRIVER = "libcuda.so.1"
#: What TensorFlow writes to stderr when ``cuInit`` fails because no driver is installed.
NO_DRIVER_LINE = "failed call to cuInit"
#: Python options that take the next argument as their value (``python -X importtime -m m``).
_OPTIONS_WITH_VALUE = ("-X", "-W", "--check-hash-based-pycs")

_lock = threading.Lock()
_prepared = False


def command_module(argv: Sequence[str] | None = None) -> str | None:
    """``MODULE`` of ``python [options] -m MODULE [args]`` (default: ``sys.orig_argv``), else
    None (a script, ``-c``, an interactive interpreter)."""
    argv = list(sys.orig_argv if argv is None else argv)
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("-m"):
            return arg[2:]
        if arg in _OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg == "-c" or arg == "-" or not arg.startswith("-"):
            return None
        i += 1
    return None


def is_project_command(argv: Sequence[str] | None = None) -> bool:
    """Whether this process was started as ``python -m <one of COMMAND_PACKAGES>.<module>``."""
    module = command_module(argv)
    return module is not None and module.split(".")[0] in COMMAND_PACKAGES


class _DeferredModule(types.ModuleType):
    """Stands for a module until an attribute is read, then imports the real one."""

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__"):  # the import system's own probes (__file__, __path__, ...)
            raise AttributeError(attr)
        real = self.__dict__.get("_deferred_real")
        if real is None:
            real = _import_real(self)
            self.__dict__["_deferred_real"] = real
        return getattr(real, attr)


class _DeferringFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the imports of :attr:`names` with a :class:`_DeferredModule`."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _DeferredModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run until the module is used."""


_finder = _DeferringFinder()


def _import_real(proxy: _DeferredModule) -> types.ModuleType:
    name = proxy.__name__
    with _lock:
        _finder.names.discard(name)
        if not _finder.names and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        if sys.modules.get(name) is proxy:
            del sys.modules[name]
        return importlib.import_module(name)


def defer_import(name: str) -> None:
    """Makes a later ``import name`` cheap: the module is imported when first used (an attribute
    read). No effect when it is already imported."""
    if name in sys.modules:
        return
    with _lock:
        _finder.names.add(name)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def cuda_driver_present() -> bool:
    """Whether the NVIDIA driver library can be loaded (as TensorFlow's CUDA build would)."""
    try:
        ctypes.CDLL(CUDA_DRIVER)
    except OSError:
        return False
    return True


def without_no_driver_error(text: str) -> str:
    """``text`` without the lines TensorFlow writes when ``cuInit`` finds no driver."""
    return "".join(line for line in text.splitlines(True) if NO_DRIVER_LINE not in line)


def list_devices_quietly() -> None:
    """Lists TensorFlow's physical devices (initialising its platforms, once per process) with
    stderr captured, then writes back all of it but the no-driver ``cuInit`` error."""
    import tensorflow as tf

    sys.stderr.flush()
    try:
        captured = tempfile.TemporaryFile()
    except OSError:  # nowhere to capture: TensorFlow lists them when it needs to
        return
    with captured:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr
            return
        os.dup2(captured.fileno(), 2)
        try:
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    kept = without_no_driver_error(text)
    if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


def use_root_handlers() -> None:
    """Removes the stderr handler ``import tensorflow`` gave its Python logger, so its records
    print once, through the handlers the command configures."""
    import tensorflow as tf

    logger = tf.get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def prepare_command_process() -> bool:
    """In a project command (see :func:`is_project_command`), once: defers the profiler
    plugin, imports TensorFlow, routes its Python logger to the command's handlers and, without
    a CUDA driver, lists the devices without the spurious ``cuInit`` error. Returns whether it
    did so (False in any other process and on later calls)."""
    global _prepared
    if _prepared or not is_project_command():
        return False
    _prepared = True
    defer_import(PROFILER_PLUGIN)
    use_root_handlers()
    if not cuda_driver_present():
        list_devices_quietly()
    return True
