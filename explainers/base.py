"""The explainer contract: every method is a generator of progressively better estimates.

A method subclasses :class:`Explainer`, declares its parameters once as :class:`Param` s (the UI builds its
widgets from them), states its exact ``query_budget`` and implements ``_iterate``: a generator that yields
:class:`Step` s, each with the queries spent so far and a *lazy* readout. ``stream`` calls a readout only
when it is due (at most every ``min_interval`` seconds, and always for the last step), so reading a map out
never slows the query loop down.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch

from models.base import BlackBox


@dataclass(frozen=True)
class Param:
    """One tunable parameter: what the UI shows as a slider / select / checkbox, and what ``__init__`` checks."""
    name: str
    kind: str                      # "int" | "float" | "bool" | "choice" | "str"
    default: Any
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] | None = None
    help: str = ""
    unit: str = ""
    step: float | None = None
    log: bool = False              # a slider over orders of magnitude
    power_of_two: bool = False
    cpu_default: Any = None        # default on a CPU (keeps a default run near 30 s on 2 cores); None = default
    label: str | None = None

    def default_for(self, device: torch.device | str | None) -> Any:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return self.cpu_default if (self.cpu_default is not None and dev.type == "cpu") else self.default

    def validate(self, value: Any, method: str) -> Any:
        where = f"{method}: parameter {self.name!r}"
        if self.kind == "bool":
            if not isinstance(value, (bool, int)) or value not in (0, 1, True, False):
                raise ValueError(f"{where} must be true or false, got {value!r}")
            return bool(value)
        if self.kind == "str":
            if not isinstance(value, str) or len(value) > 200:
                raise ValueError(f"{where} must be a short text, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in tuple(self.choices or ()):
                raise ValueError(f"{where} must be one of {list(self.choices or ())}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if self.kind == "int":
            if float(value) != int(value):
                raise ValueError(f"{where} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where} must be finite, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{where}={value!r} is outside its range [{self.low}, {self.high}]"
                             + (f" {self.unit}" if self.unit else ""))
        if self.power_of_two and (value < 1 or int(value) & (int(value) - 1)):
            raise ValueError(f"{where}={value!r} must be a power of two (…, 16, 32, 64, …)")
        return value


@dataclass
class Estimate:
    """One readout of a method's current map."""
    saliency: torch.Tensor                 # (H, W) float32 on the CPU
    queries: int                           # model inputs spent so far
    progress: float                        # 0..1 of the method's budget
    metrics: dict[str, float] = field(default_factory=dict)  # scalar diagnostics, plotted live against queries
    extras: dict[str, Any] = field(default_factory=dict)     # method-specific (raw gradient, best mask, ...)
    done: bool = False


@dataclass
class Step:
    """What ``_iterate`` yields: progress so far and how to read the current map out (called lazily)."""
    queries: int
    progress: float
    readout: Callable[[], torch.Tensor | tuple[torch.Tensor, dict, dict]]


class Explainer:
    """Base class. Subclasses set ``name``, ``params``, ``paper`` and implement ``query_budget`` and ``_iterate``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")
    white_box: ClassVar[bool] = False       # needs an open torch module (reference methods only)
    progressive: ClassVar[bool] = True
    version: ClassVar[int] = 1              # bump when the maps a method gives change: part of the cache key

    def __init__(self, seed: int = 0, **params: Any):
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {unknown}; valid: {sorted(known)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{self.name}: seed must be an integer, got {seed!r}")
        self.seed = seed
        self.config: dict[str, Any] = {}
        for name, p in known.items():
            self.config[name] = p.validate(params.get(name, p.default), self.name)
        self._check()

    def __getattr__(self, item: str) -> Any:  # parameters read as attributes: self.grid_size
        config = self.__dict__.get("config")
        if config is not None and item in config:
            return config[item]
        raise AttributeError(f"{type(self).__name__} has no attribute {item!r}")

    def _check(self) -> None:
        """Cross-parameter checks (override)."""

    @classmethod
    def defaults(cls, device=None) -> dict[str, Any]:
        return {p.name: p.default_for(device) for p in cls.params}

    # ----------------------------------------------------------------------------------- contract
    def query_budget(self, input_shape: Sequence[int]) -> int:
        """Exact number of model queries ``explain`` makes for an input of this shape and a given target."""
        raise NotImplementedError

    def _iterate(self, bb: BlackBox, x: torch.Tensor, target: int) -> Iterator[Step]:
        raise NotImplementedError

    def stream(self, bb: BlackBox, x: torch.Tensor, target: int | None = None, *,
               min_interval: float = 0.25) -> Iterator[Estimate]:
        """Yield estimates as they improve; the last one has ``progress == 1`` and ``done``.

        ``target=None`` explains the top class, at the cost of one extra query.
        """
        x = self._check_input(bb, x)
        extra = 0
        if target is None:
            target = int(bb(x.unsqueeze(0))[0].argmax())
            extra = 1
        target = self._check_target(bb, target)
        self.target_ = target
        if self.white_box and not bb.is_white_box:
            raise ValueError(f"{self.name} is a white-box reference and needs an open torch model; "
                             f"{bb.name} can only be queried")
        last_emit = -math.inf
        pending: Step | None = None
        first = True
        for step in self._iterate(bb, x, target):
            pending = step
            now = time.perf_counter()
            if first or now - last_emit >= min_interval:
                yield self._make_estimate(step, extra, done=False)
                last_emit, pending, first = time.perf_counter(), None, False
        if pending is None and first:
            raise RuntimeError(f"{self.name}: produced no estimate")
        final = pending if pending is not None else self._last_step
        yield self._make_estimate(final, extra, done=True)

    def explain(self, bb: BlackBox, x: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """The final (H, W) map: the same as the last streamed estimate."""
        est = None
        for est in self.stream(bb, x, target, min_interval=math.inf):
            pass
        return est.saliency

    # ----------------------------------------------------------------------------------- helpers
    def _make_estimate(self, step: Step, extra_queries: int, done: bool) -> Estimate:
        self._last_step = step
        out = step.readout()
        metrics, extras = {}, {}
        if isinstance(out, tuple):
            out, metrics, extras = out
        sal = out.detach().float()
        if sal.dim() == 3:
            sal = sal.squeeze(0)
        return Estimate(saliency=sal.cpu(), queries=step.queries + extra_queries,
                        progress=1.0 if done else min(1.0, float(step.progress)),
                        metrics=dict(metrics), extras=dict(extras), done=done)

    def _check_input(self, bb: BlackBox, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: the input must be a torch.Tensor (C, H, W), got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"{self.name}: the input must have shape (C, H, W), got {tuple(x.shape)}")
        if bb.input_shape is not None and tuple(x.shape) != tuple(bb.input_shape):
            raise ValueError(f"{self.name}: the input has shape {tuple(x.shape)} but {bb.name} takes "
                             f"{tuple(bb.input_shape)}; use bb.preprocess() first")
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.name}: the input contains NaN or infinite values")
        return x.to(bb.device, torch.float32)

    def _check_target(self, bb: BlackBox, target: int) -> int:
        if isinstance(target, torch.Tensor):
            target = int(target)
        if isinstance(target, bool) or not isinstance(target, int):
            raise ValueError(f"{self.name}: target must be a class index, got {target!r}")
        k = bb.num_classes
        if target < 0 or (k is not None and target >= k):
            raise ValueError(f"{self.name}: target {target} is out of range for {bb.name} "
                             f"({k} classes: 0..{(k or 1) - 1})")
        return target

    def generator(self, device: torch.device) -> torch.Generator:
        """The method's random stream: seeded, on the model's device (perturbations never cross devices)."""
        return torch.Generator(device=device).manual_seed(self.seed)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "seed": self.seed, "params": dict(self.config)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}(seed={self.seed}, {args})"


def target_scores(bb: BlackBox, batch: torch.Tensor, target: int) -> torch.Tensor:
    """f_c for a batch: (N,) scores of the target class, on the model's device."""
    return bb(batch)[:, target]
