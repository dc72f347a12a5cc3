"""``torch.module``: PyTorch modules, as exported programs, TorchScript or weights + a factory.

Three forms, none of which unpickles code when read back:

* an exported program (``torch.export.export(module, args)``), saved with
  ``torch.export.save``;
* a TorchScript module (``torch.jit.script``/``trace``), saved with
  ``torch.jit.save``;
* a plain ``nn.Module`` marked with :func:`with_factory`: its ``state_dict``
  (read back with ``weights_only=True``) and the import path of a function
  in an installed package that builds the module (``'pkg.nets:make_model'``).

The device is chosen when a model is loaded: ``OMOPS_TORCH_DEVICE`` (e.g.
``cuda``) if set, else the device the module was on when stored if this
machine has it, else the CPU.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins._frameworks import (
    INPUT_COLUMNS,
    as_matrix,
    check_action,
    describe_model,
    env_setting,
    framework,
    import_object,
    remembered_columns,
)
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["DEVICE_VARIABLE", "THREADS_VARIABLE", "TorchPlugin", "with_factory"]

KIND = "torch.module"
#: The environment variable that picks the device models are loaded on.
DEVICE_VARIABLE = "OMOPS_TORCH_DEVICE"
#: The environment variable that sets PyTorch's intra-op threads when a model is
#: loaded (``torch.set_num_threads``; process-wide, so only when asked for).
THREADS_VARIABLE = "OMOPS_TORCH_THREADS"
#: Where a module marked by :func:`with_factory` keeps its factory.
_FACTORY = "omops_factory"
#: Where a loaded exported program keeps its callable module (made once per load).
_MODULE = "_omops_module"


def _torch() -> Any:
    return framework(KIND, "torch", extra="torch", what="PyTorch")


def with_factory(
    module: Any,
    factory: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> Any:
    """Mark ``module`` to be stored as its weights plus ``factory``; returns ``module``.

    Parameters
    ----------
    module : torch.nn.Module
    factory : str
        ``'package.module:function'``: a function of an installed package
        (importable wherever the model is loaded: servers, workers) that
        returns the module, untrained, when called with ``kwargs``.
    kwargs : dict, optional
        JSON-able keyword arguments for ``factory``.
    columns : list of str, optional
        The input columns, in the order the module expects them.

    Notes
    -----
    ``om.models.put(with_factory(net, 'mypkg.nets:make_net', {'hidden': 8}), 'net')``
    stores ``net``'s weights; reading it back calls ``make_net(hidden=8)`` and
    loads them (see ``tests/frameworks/test_torch.py``).
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise InvalidData(f"with_factory needs a torch.nn.Module, got {type(module).__name__}")
    try:
        arguments = orjson.loads(orjson.dumps(dict(kwargs or {})))
    except TypeError as exc:
        raise InvalidData(f"the factory's kwargs must be JSON-able: {exc}") from None
    setattr(module, _FACTORY, {"factory": factory, "kwargs": arguments})
    if columns is not None:
        setattr(module, INPUT_COLUMNS, tuple(columns))
    return module


class TorchPlugin(Plugin):
    """PyTorch exported programs, TorchScript modules and modules marked by :func:`with_factory`.

    ``kind_meta``: ``form`` (``export``, ``torchscript`` or ``state_dict``),
    ``factory`` and ``kwargs`` (state_dict), ``device``, ``dtype`` (the input
    dtype, that of the first floating parameter), ``torch_version``, and
    ``feature_names``/``n_features`` when known.
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"predict"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        torch = sys.modules.get("torch")
        if torch is None:
            return False
        return isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram))

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        torch = _torch()
        meta: dict[str, Any] = {"torch_version": torch.__version__.split("+")[0]}
        buffer = io.BytesIO()
        if isinstance(obj, torch.export.ExportedProgram):
            meta["form"] = "export"
            tensors = list(obj.state_dict.values())
            torch.export.save(obj, buffer)
            width = _export_width(obj)
            if width is not None:
                meta["n_features"] = width
        elif isinstance(obj, torch.jit.ScriptModule):
            meta["form"] = "torchscript"
            tensors = [*obj.parameters(), *obj.buffers()]
            torch.jit.save(obj, buffer)
        elif isinstance(obj, torch.nn.Module) and hasattr(obj, _FACTORY):
            meta.update(form="state_dict", **getattr(obj, _FACTORY))
            tensors = [*obj.parameters(), *obj.buffers()]
            state = {k: v.detach().cpu() for k, v in obj.state_dict().items()}
            _check_factory(torch, meta, state)
            torch.save(state, buffer)
        elif isinstance(obj, torch.nn.Module):
            raise InvalidData(
                f"kind {KIND!r} stores a module without pickling its code: put "
                "torch.export.export(module, (example_input,)), torch.jit.script(module), "
                "or with_factory(module, 'package.module:make_module') from "
                "omops.plugins.torch_module"
            )
        else:
            raise InvalidData(f"kind {KIND!r} stores torch modules, got {type(obj).__name__}")
        meta["device"] = tensors[0].device.type if tensors else "cpu"
        floating = [t.dtype for t in tensors if t.is_floating_point()]
        meta["dtype"] = str(floating[0]).removeprefix("torch.") if floating else "float32"
        columns = remembered_columns(obj)
        if columns is not None:
            meta["feature_names"] = columns
            meta.setdefault("n_features", len(columns))
        data = buffer.getvalue()
        return Stored(
            parts=[PartRecord(blob=blobs.put_bytes(data), size=len(data))], kind_meta=meta
        )

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        torch = _torch()
        self._no_query(query)
        _set_threads(torch)
        device = _device(torch, kind_meta)
        data = io.BytesIO(blobs.read(self._single(parts, self.kind).blob))
        form = kind_meta.get("form")
        if form == "export":
            program = torch.export.load(data)
            if device.type != "cpu":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, device)
            setattr(program, _MODULE, program.module())
            model = program
        elif form == "torchscript":
            model = torch.jit.load(data, map_location=device).eval()
        elif form == "state_dict":
            model = _build(kind_meta)
            model.load_state_dict(torch.load(data, map_location=device, weights_only=True))
            model = model.to(device).eval()
            setattr(
                model, _FACTORY, {"factory": kind_meta["factory"], "kwargs": kind_meta["kwargs"]}
            )
        else:
            raise InvalidData(f"kind {KIND!r}: unknown stored form {form!r}")
        if "feature_names" in kind_meta:
            try:
                setattr(model, INPUT_COLUMNS, tuple(kind_meta["feature_names"]))
            except (AttributeError, RuntimeError):  # a TorchScript module may refuse it
                pass
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(
            kind_meta, ("form", "factory", "device", "dtype", "feature_names", "n_features")
        )

    def takes_arrays(self, obj: Any) -> bool:
        """True: the module is given the frame's numbers as a tensor either way."""
        return True

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        torch = _torch()
        check_action(KIND, self.actions, action)
        module = getattr(obj, _MODULE, None) or (
            obj.module() if isinstance(obj, torch.export.ExportedProgram) else obj
        )
        device, dtype = _placement(torch, obj, module)
        # float64 first: exact for float64 modules, and torch casts to half/bfloat16
        x = torch.tensor(as_matrix(X, "float64", KIND), device=device, dtype=dtype)
        with torch.no_grad():
            try:
                out = module(x, **kwargs)
            # shape and dtype mismatches: RuntimeError (an exported program's guards: AssertionError)
            except (RuntimeError, AssertionError) as exc:
                raise InvalidData(f"the module could not predict this input: {exc}") from None
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise InvalidData(f"the module returned {type(out).__name__}, not a tensor")
        return ActionOutcome(result=out.detach().cpu().numpy())


def _build(kind_meta: Mapping[str, Any]) -> Any:
    factory = import_object(kind_meta["factory"], "the module factory")
    if not callable(factory):
        raise InvalidData(f"the module factory {kind_meta['factory']!r} is not callable")
    return factory(**kind_meta.get("kwargs", {}))


def _check_factory(torch: Any, meta: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """The factory builds a module that takes ``state``: else the put is refused now."""
    module = _build(meta)
    if not isinstance(module, torch.nn.Module):
        raise InvalidData(
            f"the module factory {meta['factory']!r} returned {type(module).__name__}, "
            "not a torch.nn.Module"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise InvalidData(
            f"the module factory {meta['factory']!r} builds a module that does not take "
            f"these weights: {exc}"
        ) from None


def _device(torch: Any, kind_meta: Mapping[str, Any]) -> Any:
    """``OMOPS_TORCH_DEVICE``, else the stored device if available here, else the CPU."""
    asked = env_setting(DEVICE_VARIABLE)
    if asked is not None:
        try:
            device = torch.device(asked)
        except RuntimeError as exc:
            raise PluginError(f"{DEVICE_VARIABLE}={asked!r} is not a torch device: {exc}") from None
        if not _available(torch, device):
            raise PluginError(
                f"{DEVICE_VARIABLE}={asked!r}, but this machine has no such device; unset it "
                "or install a PyTorch build for it"
            )
        return device
    stored = torch.device(kind_meta.get("device", "cpu"))
    return stored if _available(torch, stored) else torch.device("cpu")


def _set_threads(torch: Any) -> None:
    """``OMOPS_TORCH_THREADS``, when set: e.g. 1 in a server whose requests run in threads."""
    asked = env_setting(THREADS_VARIABLE)
    if asked is None:
        return
    if not asked.isdigit() or int(asked) < 1:
        raise PluginError(f"{THREADS_VARIABLE} must be a positive number of threads, got {asked!r}")
    if torch.get_num_threads() != int(asked):
        torch.set_num_threads(int(asked))


def _available(torch: Any, device: Any) -> bool:
    if device.type == "cpu":
        return True
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    return bool(is_available and is_available())


def _placement(torch: Any, obj: Any, module: Any) -> tuple[Any, Any]:
    """The device and floating dtype of a loaded module's weights (CPU, float32 without any)."""
    if isinstance(obj, torch.export.ExportedProgram):
        tensors = list(obj.state_dict.values())
    else:
        tensors = [*module.parameters(), *module.buffers()]
    floating = [t for t in tensors if t.is_floating_point()]
    if floating:
        return floating[0].device, floating[0].dtype
    return (tensors[0].device if tensors else torch.device("cpu")), torch.float32


def _export_width(program: Any) -> int | None:
    """The width of an exported program's single 2-D input, from its example inputs."""
    example = getattr(program, "example_inputs", None)
    try:
        args = example[0] if example else ()
    except (TypeError, IndexError):
        return None
    if len(args) != 1 or getattr(args[0], "ndim", None) != 2:
        return None
    return int(args[0].shape[1])
