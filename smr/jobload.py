"""Turning a job reference into a Job, and a Job into bytes that workers can load.

References: ``file.py`` (the one Job subclass defined in it), ``file.py:ClassName``, or
``package.module:ClassName``. User code travels to workers by value (cloudpickle), so workers
need only smr and the libraries the job imports, never the user's source tree.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import types

import cloudpickle

from .api import Job


class JobLoadError(ValueError):
    """The job reference names nothing loadable; the message says what and why."""


def load_job(ref: str) -> Job:
    target, _, class_name = ref.partition(":") if not _is_windows_drive(ref) else (ref, "", "")
    if target.endswith(".py"):
        module = _load_file(target)
    else:
        if not class_name:
            raise JobLoadError(f"job reference {ref!r}: use file.py, file.py:ClassName or "
                               "package.module:ClassName")
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise JobLoadError(f"job reference {ref!r}: cannot import module {target!r}: {e}") from None
    cls = _pick_class(module, class_name, ref)
    try:
        return cls()
    except Exception as e:
        raise JobLoadError(f"job {ref!r}: {cls.__name__}() failed: {type(e).__name__}: {e}") from e


def _is_windows_drive(ref: str) -> bool:
    return len(ref) > 1 and ref[1] == ":" and ref[0].isalpha() and ref[2:3] in ("\\", "/")


def _load_file(path: str) -> types.ModuleType:
    if not os.path.isfile(path):
        raise JobLoadError(f"job file not found: {path}")
    path = os.path.abspath(path)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    name = f"smr_job_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JobLoadError(f"cannot load job file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise JobLoadError(f"job file {path} failed to import: {type(e).__name__}: {e}") from e
    return module


def _pick_class(module: types.ModuleType, class_name: str, ref: str) -> type[Job]:
    if class_name:
        cls = getattr(module, class_name, None)
        if cls is None:
            raise JobLoadError(f"job reference {ref!r}: no {class_name!r} in {module.__name__}")
        if not (inspect.isclass(cls) and issubclass(cls, Job)):
            raise JobLoadError(f"job reference {ref!r}: {class_name} is not a subclass of smr.Job")
        return cls
    found = [c for c in vars(module).values()
             if inspect.isclass(c) and issubclass(c, Job) and c.__module__ == module.__name__]
    if not found:
        raise JobLoadError(f"job reference {ref!r}: defines no subclass of smr.Job")
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise JobLoadError(f"job reference {ref!r} defines several jobs ({names}); "
                           f"name one as {ref}:ClassName")
    return found[0]


_INSTALLED = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def _is_user_module(module_name: str) -> bool:
    """User code (scripts, notebooks, test files) as opposed to installed packages and smr."""
    if module_name in ("__main__", "__mp_main__") or module_name.startswith("smr_job_"):
        return True
    top = module_name.split(".")[0]
    if top in ("smr", "builtins") or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return False
    path = os.path.abspath(path)
    return not path.startswith(_INSTALLED)


def pickle_job(job: Job) -> bytes:
    """The job object as bytes; user modules are pickled by value so workers need no source."""
    registered = []
    for mod_name in _modules_of(job):
        module = sys.modules.get(mod_name)
        if module is not None and _is_user_module(mod_name) and mod_name not in ("__main__", "__mp_main__"):
            try:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            except ValueError:
                pass
    try:
        return cloudpickle.dumps(job)
    except Exception as e:
        raise JobLoadError(f"job {type(job).__name__} cannot be sent to workers: "
                           f"{type(e).__name__}: {e}") from e
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _modules_of(job: Job) -> set[str]:
    names = {c.__module__ for c in type(job).__mro__}
    for value in vars(job).values():
        mod = getattr(value, "__module__", None)
        if isinstance(mod, str):
            names.add(mod)
    return names
