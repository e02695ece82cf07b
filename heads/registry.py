"""Heads by name, in the manner of timm's ``register_model`` / ``create_model``.

A head is one class in one file, registered with ``@register_head("name")``. It declares:

- ``inputs``: ``"vectors"`` (named flat arrays, ``train.features``) or ``"map"`` (one
  stored tap, ``train.tap``);
- ``Params``: a pydantic model, its config section: ``train.<name>`` is validated by it;
- ``fit(data) -> self`` and ``predict_proba(data) -> np.ndarray`` (probability of fake
  per row of ``data``, a :class:`heads.data.HeadData`);
- ``save(folder)`` and ``classmethod load(folder)``: ``save`` writes the constructor
  arguments next to the weights, so ``load`` needs nothing else.

:class:`heads.base.HeadBase` gives ``__init__(cfg)``, ``save``/``load`` of the config and
``describe``; a head adds ``save_weights``/``load_weights``.

The built-in heads are the modules of ``heads/zoo/`` (every module there is imported, so a
new head is one new file); a user's head comes from ``--head-module FILE.py`` or from an
installed package's entry point in the group ``vidstore.heads``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from pathlib import Path

HEADS: dict[str, type] = {}
INPUTS = ("vectors", "map")
ENTRY_POINT_GROUP = "vidstore.heads"
_REQUIRED = ("Params", "fit", "predict_proba", "save", "load")
_loaded = False


class HeadError(ValueError):
    """An unknown head, a head module that cannot be loaded, or a head class that lacks a part."""


def register_head(name: str):
    """Class decorator: ``@register_head("knn")`` adds the class to the registry."""

    def add(cls: type) -> type:
        missing = [part for part in _REQUIRED if not hasattr(cls, part)]
        if missing:
            raise HeadError(f"head {name!r} ({cls.__module__}.{cls.__qualname__}) lacks {missing}")
        if getattr(cls, "inputs", None) not in INPUTS:
            raise HeadError(f"head {name!r}: inputs must be one of {list(INPUTS)}, got {getattr(cls, 'inputs', None)!r}")
        known = HEADS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise HeadError(f"head {name!r} is registered twice ({known.__module__} and {cls.__module__})")
        cls.name = name
        HEADS[name] = cls
        return cls

    return add


def load_builtin_heads() -> None:
    """Import every module of heads/zoo and every ``vidstore.heads`` entry point, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from vidstore.heads import zoo

    for module in pkgutil.iter_modules(zoo.__path__):
        importlib.import_module(f"{zoo.__name__}.{module.name}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as err:
            raise HeadError(f"entry point {entry.name} ({entry.value}) of {ENTRY_POINT_GROUP} failed to load: {err}") from None


def load_head_module(path: str | Path) -> None:
    """Import a user's head module (a .py file); it registers its heads as it loads."""
    path = Path(path)
    if not path.is_file():
        raise HeadError(f"head module not found: {path}")
    name = f"vidstore_user_heads.{path.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
        return
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling (DataLoader workers) finds the module by name
    load_builtin_heads()
    try:
        spec.loader.exec_module(module)
    except HeadError:
        raise
    except Exception as err:
        del sys.modules[name]
        raise HeadError(f"head module {path} failed to load: {type(err).__name__}: {err}") from None


def head_names() -> list[str]:
    load_builtin_heads()
    return sorted(HEADS)


def head_class(name: str) -> type:
    load_builtin_heads()
    if name not in HEADS:
        raise HeadError(f"unknown head {name!r}; choose from {sorted(HEADS)} (or load yours with --head-module FILE.py)")
    return HEADS[name]


def head_config(name: str, cfg):
    """The head's validated section of a :class:`configs.Config` (``train.<name>``)."""
    return getattr(cfg.train, name)


def create_head(name: str, cfg):
    """A fresh, unfitted head configured by ``cfg`` (a whole Config)."""
    return head_class(name)(head_config(name, cfg))
