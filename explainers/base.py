"""The explainer contract: every method is a generator of progressively better estimates.

A method subclasses :class:`Explainer`, declares its parameters once as :class:`Param` s in ``param_specs``
(the UI builds its widgets from them), states its exact ``query_budget`` and implements ``_iterate``: a
generator that yields :class:`Step` s, each with the queries spent so far and a *lazy* readout that returns a
:class:`Readout`. ``stream`` calls a readout only when it is due (at most every ``min_interval`` seconds, and
always for the last step), so reading a map out never slows the query loop down. ``per_call`` plans how many
perturbed inputs go into one forward call.
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


@dataclass(frozen=True)
class Metric:
    """One live diagnostic a method reports in ``Readout.metrics[key]``: what the "diagnostics" chart calls it.

    ``scale`` converts the reported value to the unit shown (a fraction reported as 0.05 and shown as 5 %:
    ``scale=100, unit="%"``); the value in ``metrics`` stays as reported."""
    key: str
    label: str
    unit: str = ""
    help: str = ""
    scale: float = 1.0

    def title(self) -> str:
        """The label with its unit, as a legend or axis shows it: "relative standard error (%)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


@dataclass
class Readout:
    """What a step's readout returns: the map, its diagnostics, and the raw gradient estimate if there is one."""
    saliency: torch.Tensor                                   # (H, W), or (1, H, W); any device
    metrics: dict[str, float] = field(default_factory=dict)  # scalar diagnostics, plotted live against queries
    # (C, H, W), or (1, H, W) when one noise map is shared by the channels (then it is the channel sum)
    gradient: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)     # other method-specific things (best mask, ...)


@dataclass
class Estimate:
    """One readout of a method's current map."""
    saliency: torch.Tensor                 # (H, W) float32 on the CPU
    queries: int                           # model inputs spent so far
    progress: float                        # 0..1 of the method's budget
    metrics: dict[str, float] = field(default_factory=dict)  # scalar diagnostics, plotted live against queries
    extras: dict[str, Any] = field(default_factory=dict)     # method-specific (best mask, generation, ...)
    done: bool = False
    gradient: torch.Tensor | None = None   # the raw gradient estimate on the CPU (see Readout.gradient)
    converged: bool = False                # the last estimate of a run that ``stop_tol`` stopped (see stream)


@dataclass
class Step:
    """What ``_iterate`` yields: progress so far and how to read the current map out (called lazily)."""
    queries: int
    progress: float
    readout: Callable[[], Readout]


SMALL_INPUT = 64 * 64   # pixels; at or below, one input costs the model little, so a call takes more of them
STOP_CHECKS = 20        # a convergence check every 1/20 of the budget (stream's stop_tol)
STOP_WINDOW = 3         # consecutive changes below the tolerance that stop a run (stream's stop_window)


class Explainer:
    """Base class. Subclasses set ``name``, ``param_specs``, ``paper`` and implement ``query_budget`` and
    ``_iterate``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    param_specs: ClassVar[tuple[Param, ...]] = ()
    # the diagnostics the readouts put into Readout.metrics (keys as declared), with a label and a unit each
    metric_specs: ClassVar[tuple[Metric, ...]] = ()
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")
    white_box: ClassVar[bool] = False       # needs an open torch module (reference methods only)
    # a query-only estimate of the input gradient in every Readout.gradient (what the convergence lab compares
    # with autograd); the white-box references give the exact gradient and do not declare it
    estimates_gradient: ClassVar[bool] = False
    # parameters under which Readout.gradient is the input gradient, where the defaults estimate something
    # else (LR's default contrast noise gives a presence gradient): what the lab and the contract test add
    gradient_options: ClassVar[dict[str, Any]] = {}
    # (parameter, queries per unit): the one parameter that scales the query budget, if there is one
    budget_param: ClassVar[tuple[str, int] | None] = None
    version: ClassVar[int] = 1              # bump when the maps a method gives change: part of the cache key
    # its intermediate maps estimate the final one, so ``stream(stop_tol=...)`` may stop it once they settle;
    # False where a partial map is only part of the answer (a raster scan, a path integral): it runs to the end
    early_stop: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # the declarations were once called ``params``: a method written that way would silently take none
        if "params" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: declare parameters as param_specs, not params")

    def __init__(self, seed: int = 0, **params: Any):
        known = {p.name: p for p in self.param_specs}
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
        return {p.name: p.default_for(device) for p in cls.param_specs}

    # ----------------------------------------------------------------------------------- contract
    def query_budget(self, input_shape: Sequence[int]) -> int:
        """Exact number of model queries ``explain`` makes for an input of this shape and a given target."""
        raise NotImplementedError

    def extra_seconds(self, input_shape: Sequence[int], device: torch.device | str, modality: str = "image") -> float:
        """Seconds of work besides the queries (training a student, fitting a model), as measured on ``device``;
        0 for methods whose time is their queries. ``runtime.estimate`` adds it to the budget's time."""
        return 0.0

    def _iterate(self, bb: BlackBox, x: torch.Tensor, target: int) -> Iterator[Step]:
        raise NotImplementedError

    def stream(self, bb: BlackBox, x: torch.Tensor, target: int | None = None, *,
               min_interval: float = 0.25, stop_tol: float | None = None,
               stop_window: int = STOP_WINDOW) -> Iterator[Estimate]:
        """Yield estimates as they improve; the last one has ``progress == 1`` and ``done``.

        ``target=None`` explains the top class, at the cost of one extra query.

        ``stop_tol`` (optional) stops the run once it has converged: every ``1/STOP_CHECKS`` of the budget the
        map is read out and compared with the previous check (both centred and scaled to unit norm:
        ``||m_t - m_{t-1}|| / ||m_t||``); when the last ``stop_window`` changes are all below ``stop_tol`` the
        run ends there, its last estimate ``done`` and ``converged`` with the queries actually spent. The checks
        sit at fixed query counts, not at wall-clock times, so a seed and a tolerance give the same map and the
        same queries on any machine. ``None`` or 0 (and methods with ``early_stop = False``) spend the whole
        budget, as without it.
        """
        rule = StopRule(stop_tol, stop_window) if stop_tol else None
        if not self.early_stop:
            rule = None
        x = self._check_input(bb, x)
        extra = 0
        if target is None:
            target = int(bb(x.unsqueeze(0))[0].argmax())
            extra = 1
        target = self._check_target(bb, target)
        if self.white_box and not bb.is_white_box:
            raise ValueError(f"{self.name} is a white-box reference and needs an open torch model; "
                             f"{bb.name} can only be queried")
        last_emit = -math.inf
        pending: Step | None = None
        first = True
        for step in self._iterate(bb, x, target):
            pending = step
            out = None
            if rule is not None and step.progress < 1 and rule.due(step.progress):
                out = step.readout()
                if rule.update(out.saliency):
                    yield self._make_estimate(step, extra, done=True, out=out, converged=True)
                    return
            now = time.perf_counter()
            if first or now - last_emit >= min_interval:
                yield self._make_estimate(step, extra, done=False, out=out)
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
    def per_call(self, bb: BlackBox, x: torch.Tensor, per_item: int = 1, *, min_batches: int = 4,
                 small_queries: int = 256, large_batches: int = 4) -> int:
        """The batching plan: items (of ``per_item`` queries each) per forward call for this model and input.

        Whole model batches (no ragged chunk at every call): ``large_batches`` of them on inputs over
        SMALL_INPUT pixels, and on small ones about ``small_queries`` queries (at least ``min_batches`` batches).
        """
        # The methods keep the plans they were measured with (bench/ tables, README timings): RISE, occlusion
        # and LR take the defaults; Sobol min_batches=1 (its calls need not end on a design, so it never needed
        # the floor); DAX small_queries=0, a fixed 4 batches (its time goes into training, not queries); GEEX
        # per_item=64 (noise comes in fixed 32-pair draws so a seed gives the same map at any batch size),
        # small_queries=0 and large_batches=0 (one draw per call on large inputs).
        bs = bb.batch_size
        if x.shape[-2] * x.shape[-1] <= SMALL_INPUT:
            queries = bs * max(min_batches, small_queries // bs)
        else:
            queries = bs * large_batches
        return max(1, queries // per_item)

    def _make_estimate(self, step: Step, extra_queries: int, done: bool, out: Readout | None = None,
                       converged: bool = False) -> Estimate:
        self._last_step = step
        out = step.readout() if out is None else out
        if not isinstance(out, Readout):
            raise TypeError(f"{self.name}: a step's readout must return a Readout, got {type(out).__name__}")
        sal = out.saliency.detach().float()
        if sal.dim() == 3:
            sal = sal.squeeze(0)
        grad = None if out.gradient is None else out.gradient.detach().cpu()
        return Estimate(saliency=sal.cpu(), queries=step.queries + extra_queries,
                        progress=1.0 if done else min(1.0, float(step.progress)),
                        metrics=dict(out.metrics), extras=dict(out.extras), done=done, gradient=grad,
                        converged=converged)

    def _check_input(self, bb: BlackBox, x: torch.Tensor) -> torch.Tensor:
        return check_input(bb, x, self.name)

    def _check_target(self, bb: BlackBox, target: int) -> int:
        return check_target(bb, target, self.name)

    def generator(self, device: torch.device) -> torch.Generator:
        """The method's random stream: seeded, on the model's device (perturbations never cross devices)."""
        return torch.Generator(device=device).manual_seed(self.seed)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "seed": self.seed, "params": dict(self.config)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}(seed={self.seed}, {args})"


def check_input(bb: BlackBox, x: torch.Tensor, who: str = "input") -> torch.Tensor:
    """The input as the methods take it (a finite (C, H, W) tensor of the model's shape) on the model's device;
    TypeError / ValueError naming ``who`` otherwise. Public: the metrics and the engine check with the same rules."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: the input must be a torch.Tensor (C, H, W), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{who}: the input must have shape (C, H, W), got {tuple(x.shape)}")
    if bb.input_shape is not None and tuple(x.shape) != tuple(bb.input_shape):
        raise ValueError(f"{who}: the input has shape {tuple(x.shape)} but {bb.name} takes "
                         f"{tuple(bb.input_shape)}; use bb.preprocess() first")
    if not torch.isfinite(x).all():
        raise ValueError(f"{who}: the input contains NaN or infinite values")
    return x.to(bb.device, torch.float32)


def check_target(bb: BlackBox, target: int, who: str = "input") -> int:
    """``target`` as a class index of ``bb`` (a 0-d tensor is read as its value); ValueError naming ``who`` otherwise."""
    if isinstance(target, torch.Tensor):
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        raise ValueError(f"{who}: target must be a class index, got {target!r}")
    k = bb.num_classes
    if target < 0 or (k is not None and target >= k):
        raise ValueError(f"{who}: target {target} is out of range for {bb.name} "
                         f"({k} classes: 0..{(k or 1) - 1})")
    return target


def target_scores(bb: BlackBox, batch: torch.Tensor, target: int) -> torch.Tensor:
    """f_c for a batch: (N,) scores of the target class, on the model's device."""
    return bb(batch)[:, target]


class StopRule:
    """Convergence stop on fixed query fractions: ``due(progress)`` says a check point was passed, ``update(map)``
    records the change since the last check and says whether the last ``window`` changes are all below ``tol``."""

    def __init__(self, tol: float, window: int = STOP_WINDOW, checks: int = STOP_CHECKS):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise ValueError(f"stop_tol must be a finite number >= 0, got {tol!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"stop_window must be a whole number >= 1, got {window!r}")
        self.tol, self.window, self.checks = float(tol), window, checks
        self._mark = 0                    # the last check point passed (in 1/checks of the budget)
        self._prev: torch.Tensor | None = None
        self.changes: list[float] = []

    def due(self, progress: float) -> bool:
        mark = math.floor(float(progress) * self.checks + 1e-9)
        if mark <= self._mark:
            return False
        self._mark = mark
        return True

    def update(self, saliency: torch.Tensor) -> bool:
        m = saliency.detach().to("cpu", torch.float64).flatten()
        m = m - m.mean()
        norm = float(m.norm())
        if not math.isfinite(norm) or norm == 0:      # no map yet (e.g. Sobol before its second design)
            self._prev = None
            self.changes.append(math.inf)
            return False
        m = m / norm
        self.changes.append(math.inf if self._prev is None else float((m - self._prev).norm()))
        self._prev = m
        last = self.changes[-self.window:]
        return len(last) == self.window and all(c < self.tol for c in last)
