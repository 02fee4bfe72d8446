"""Argument checks at the library's boundary: each error names the argument, the value given
and what is allowed."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch


class ArgumentError(ValueError):
    """A one-line ValueError that names arguments of a library call by their Python names.

    ``template`` has a ``{placeholder}`` for each argument it names; ``names`` gives each
    placeholder's Python spelling (``append=True``, ``configs['dim']``) and ``keys`` the item of
    a keyed argument (``configs``: ``'dim'``). A front end that spells arguments otherwise (the
    command line's ``--append``, ``--set dim=``) rebuilds the message with :meth:`spelled`."""

    def __init__(self, template: str, *, keys: Mapping[str, str] | None = None, **names: str) -> None:
        self.template, self.names, self.keys = template, names, dict(keys or {})
        super().__init__(self._fill(names))

    def _fill(self, spelled: Mapping[str, str]) -> str:
        text = self.template  # placeholders replaced one by one: other braces in the text stay
        for placeholder, spelling in spelled.items():
            text = text.replace("{" + placeholder + "}", spelling)
        return text

    def spelled(self, spellings: Mapping[str, str | Callable[[str], str]]) -> str:
        """The message with each placeholder in ``spellings`` spelled its way: a string, or a
        function of the placeholder's key; the others keep their Python spelling."""

        def spell(placeholder: str) -> str:
            how = spellings.get(placeholder)
            if how is None:
                return self.names[placeholder]
            return how(self.keys.get(placeholder, "")) if callable(how) else how

        return self._fill({p: spell(p) for p in self.names})


def check_lipschitz(value: Any, name: str = "lipschitz") -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not (0.0 < rho < 1.0) or math.isnan(rho):
        raise ValueError(f"{name} must lie in the open interval (0, 1) for a contraction, got {value!r}")
    return rho


def _check_int(value: Any, name: str, minimum: int, integral_float: bool) -> int:
    integral = isinstance(value, int) or (integral_float and isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str, *, minimum: int = 1, integral_float: bool = False) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (>= 1), else a ValueError naming
    ``name``. Bools are refused, and floats unless ``integral_float`` (then 2.0 is 2, 2.5 is
    refused)."""
    return _check_int(value, name, max(1, minimum), integral_float)


def check_nonnegative_int(value: Any, name: str) -> int:
    """``value`` if it is an integer >= 0 (bools and floats refused), else a ValueError."""
    return _check_int(value, name, 0, False)


def check_depth(value: Any, name: str = "depth") -> int:
    """A depth (or iteration count): an integer >= 1; an integral float (a depth read back from
    a table) is taken as its integer."""
    return check_positive_int(value, name, integral_float=True)


def check_tol(value: Any, name: str = "tol") -> float | None:
    """``None`` means the dtype's default; otherwise a positive finite number."""
    if value is None:
        return None
    try:
        tol = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not tol > 0 or math.isinf(tol):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return tol


def check_choice(value: Any, name: str, allowed: list[str] | tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


_DTYPES = {
    "float64": torch.float64,
    "double": torch.float64,
    "float32": torch.float32,
    "float": torch.float32,
}


def check_dtype(value: Any, name: str = "dtype") -> torch.dtype:
    if isinstance(value, torch.dtype):
        if not value.is_floating_point:
            raise ValueError(f"{name} must be a floating torch dtype, got {value!r}")
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in _DTYPES:
        return _DTYPES[value.removeprefix("torch.")]
    raise ValueError(
        f"{name} must be a torch floating dtype (torch.float32, torch.float64 or their names), got {value!r}"
    )


def check_device(value: Any, name: str = "device") -> torch.device:
    if isinstance(value, torch.device):
        device = value
    else:
        try:
            device = torch.device(value)
        except (RuntimeError, TypeError):
            raise ValueError(f"{name} must be a torch device such as 'cpu' or 'cuda', got {value!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={value!r} was asked for, but CUDA is not available on this machine")
    if device.type != "cpu":
        try:  # any other device: one empty tensor there says whether it exists on this machine
            torch.empty(0, device=device)
        except Exception:
            raise ValueError(
                f"{name}={value!r} is not available on this machine; available: {', '.join(available_devices())}"
            ) from None
    if device.type == "cuda":
        ieee_float32()
    return device


def available_devices() -> list[str]:
    """The torch devices of this machine: ``cpu``, each CUDA device, ``mps`` where present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def ieee_float32() -> None:
    """Make float32 on CUDA mean float32: TensorFloat-32 off for cuDNN convolutions (on by
    default on Ampere and later GPUs) and for matrix products. TF32 keeps 10 bits of mantissa:
    it would floor every relative gradient error near 1e-3 and keep float32 solves from
    their tolerance. Set ``JFBBENCH_TF32=1`` to leave PyTorch's settings alone."""
    if os.environ.get("JFBBENCH_TF32") == "1":
        return
    if hasattr(torch.backends.cudnn, "fp32_precision"):  # PyTorch >= 2.9: the new settings only
        # each operator's own setting: in PyTorch 2.11 cuDNN's convolutions keep "tf32" when
        # only the cuDNN-wide setting is changed
        for backend in (torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
            backend.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def check_seed(value: Any, name: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def default_tol(dtype: torch.dtype) -> float:
    """Forward and adjoint tolerances tight enough in float64 that the DEQ gradient is within
    1e-6 relative of the exact one at rho = 0.99, and reachable in float32."""
    return 1e-12 if dtype == torch.float64 else 1e-5
