"""BlackBox: the only door the black-box explainers have to a model.

A BlackBox turns a batch of inputs (N, C, H, W) in the model's input space into scores (N, K). It never
exposes gradients to the explainers; it counts every input it serves (``queries``), splits large batches
into the chunk size that is fastest on its device, and carries the model's preprocessing and labels.
"""
from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from maps import normalise

from .tuning import fastest

SCORE_MODES = ("prob", "logit", "logprob")
# The score the app, the benches and the command line explain unless told otherwise. A class's logit is its own
# evidence; its probability also moves when a perturbation raises or lowers a competitor, and the maps of every
# method localise worse in it (docs/measurements.md, localisation: probability against logit). The library's
# ``load_model`` keeps probabilities (the scores a user reads); ``explained_view`` is the one switch.
EXPLAINED_SCORE = "logit"
OUTPUT_KINDS = ("logits", "probs", "scores")
_Box = TypeVar("_Box", bound="BlackBox")


class QueryBudgetExceeded(RuntimeError):
    """Raised when a BlackBox with a ``max_queries`` cap is asked for more inputs than it has left."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when it is there and nothing else was asked for, else the CPU.

    The one place that chooses a device: loaders, the audio front end and the job runner all call it, so "auto"
    means the same thing everywhere.
    """
    if not device or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    n = torch.get_num_threads()
    return f"CPU ({os.cpu_count()} cores, {n} torch thread{'' if n == 1 else 's'})"


def cache_root() -> Path:
    """Folder of the project's on-disk caches (measured batch sizes, the job results): ``$SALIENCY_CACHE_DIR``,
    else ``.cache`` at the repository root in a checkout, else ``~/.cache/saliency`` where the package is
    installed (site-packages is no place to write). Tests point the variable at a temporary folder."""
    if os.environ.get("SALIENCY_CACHE_DIR"):
        return Path(os.environ["SALIENCY_CACHE_DIR"])
    root = Path(__file__).resolve().parent.parent
    return root / ".cache" if (root / "pyproject.toml").exists() else Path.home() / ".cache" / "saliency"


class BlackBox:
    """Wrap a torch module or any callable ``batch -> scores``.

    Parameters
    ----------
    fn: a ``torch.nn.Module`` (kept as ``.module`` for the white-box reference methods only) or a callable
        mapping a float tensor (N, *input_shape) to (N, K) scores. A subclass that reaches its model another way
        (``HttpBlackBox``) passes ``None`` and overrides :meth:`forward_raw` instead.
    labels: K class names (default ``class 0 .. class K-1`` once K is known).
    input_shape: (C, H, W) the model takes; inputs of another shape are rejected with a clear message.
    outputs: what ``fn`` returns: ``"logits"``, ``"probs"`` or ``"scores"`` (anything else, served as is).
    score_mode: for logits/probs outputs, the space the explainers see: ``prob``, ``logit`` or ``logprob``.
    batch_size: chunk size for forward passes; ``None`` measures the fastest once per model and device.
    preprocess: raw input (PIL image; or waveform, sample_rate for audio) -> tensor (C, H, W).
    to_display: tensor (C, H, W) -> uint8 numpy (H, W, 3) for overlays (images) or (F, T) float (audio).
    max_queries: a hard cap; a call that would pass it raises ``QueryBudgetExceeded`` and serves nothing.

    Subclasses override one hook, :meth:`forward_raw` (raw outputs of a batch), and inherit the input checks,
    counting, budget and score modes of ``__call__``; per-view state goes in :meth:`_start_counters`.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor] | torch.nn.Module | None,
        labels: Sequence[str] | None = None,
        input_shape: Sequence[int] | None = None,
        *,
        name: str = "callable",
        outputs: str = "scores",
        score_mode: str = "prob",
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        preprocess: Callable[..., torch.Tensor] | None = None,
        to_display: Callable[[torch.Tensor], np.ndarray] | None = None,
        modality: str = "image",
        channels_last: bool | None = None,
        max_queries: int | None = None,
        meta: dict[str, Any] | None = None,
    ):
        if outputs not in OUTPUT_KINDS:
            raise ValueError(f"outputs must be one of {OUTPUT_KINDS}, got {outputs!r}")
        if score_mode not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
        if fn is None and type(self).forward_raw is BlackBox.forward_raw:
            raise TypeError("BlackBox needs a model: a torch.nn.Module or a callable batch -> scores")
        self.module = fn if isinstance(fn, torch.nn.Module) else None
        self.device = pick_device(device) if self.module is not None or device is not None else torch.device("cpu")
        if self.module is not None:
            self.module.eval().to(self.device)
            if channels_last is None:  # measured: 2x faster for convnets on CPU (issue 2)
                channels_last = self.device.type == "cpu" and len(input_shape or ()) == 3
            if channels_last:
                self.module.to(memory_format=torch.channels_last)
        self._channels_last = bool(channels_last)
        self.fn = fn
        self.name = name
        self.outputs = outputs
        self.score_mode = score_mode
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self._labels = list(labels) if labels is not None else None
        self._batch_size = int(batch_size) if batch_size else None
        self._preprocess = preprocess
        self._to_display = to_display
        self.modality = modality
        self.max_queries = max_queries
        self.meta = dict(meta or {})
        self._runner: Callable[[torch.Tensor], torch.Tensor] | None = None
        # what serves the queries: "torch" for a module until models.backends moves them; "callable" otherwise
        self.backend = "torch" if self.module is not None else "callable"
        self.backend_note = ""
        self._start_counters()

    def _start_counters(self) -> None:
        """State that belongs to one view (its counter and the lock guarding it), set afresh by ``view()``."""
        self._queries = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        """Identifies the model *and* the score space, for cache keys."""
        return f"{self.name}:{self.score_mode}" if self.outputs != "scores" else self.name

    @property
    def is_white_box(self) -> bool:
        """True only for an open torch module (the white-box references need one)."""
        return self.module is not None

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            k = self.meta.get("num_classes")
            return [f"class {i}" for i in range(k)] if k else []
        return self._labels

    @property
    def num_classes(self) -> int | None:
        return len(self._labels) if self._labels is not None else self.meta.get("num_classes")

    def view(self: _Box, *, score_mode: str | None = None, max_queries: int | None = None) -> _Box:
        """A shallow copy of the same class sharing the model, with its own query counter and budget (one per job
        or session); ``score_mode`` changes the score space of the copy only."""
        if score_mode is not None and score_mode not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
        clone = copy.copy(self)   # same subclass, same attributes: the model and any transport stay shared
        clone._start_counters()
        clone.meta = dict(self.meta)
        if score_mode is not None:
            clone.score_mode = score_mode
        clone.max_queries = max_queries
        return clone

    # ------------------------------------------------------------------ queries
    @property
    def queries(self) -> int:
        return self._queries

    def reset_queries(self) -> None:
        with self._lock:
            self._queries = 0

    def count(self, n: int) -> None:
        """Count ``n`` inputs served outside ``__call__`` (the white-box references' forward passes with autograd).

        Raises ``QueryBudgetExceeded``, counting nothing, when they would pass ``max_queries``.
        """
        with self._lock:
            if self.max_queries is not None and self._queries + n > self.max_queries:
                raise QueryBudgetExceeded(
                    f"query budget of {self.max_queries} reached ({self._queries} served, {n} more asked)")
            self._queries += n

    # ------------------------------------------------------------------ forward
    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 1 + len(self.input_shape or x.shape[1:]):
            raise ValueError(f"{self.name}: expected a batch of shape (N, {', '.join(map(str, self.input_shape or ()))}), "
                             f"got {tuple(x.shape)}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.name}: expected inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, K) on ``self.device`` for a batch (N, *input_shape)."""
        self.check_input(x)
        n = x.shape[0]
        self.count(n)
        if n == 0:
            return torch.empty(0, self.num_classes or 0, device=self.device)
        with torch.inference_mode():
            raw = self.forward_raw(x)
            return self.to_score(raw.to(self.device).float())

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """The model's raw outputs (N, K) for a batch: not counted, no score mapping, autograd not switched off.

        The hook a subclass overrides to reach its model another way. Here: ``fn`` on chunks of ``batch_size``.
        """
        bs = self.batch_size
        x = x.to(self.device, torch.float32, non_blocking=True)
        outs = [self._forward_chunk(x[i:i + bs]) for i in range(0, x.shape[0], bs)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def set_runner(self, runner: Callable[[torch.Tensor], torch.Tensor], backend: str, *, note: str = "",
                   batch_size: int | None = None) -> None:
        """Serve the queries with ``runner`` (a faster copy of ``module``: ``models.backends``); the module stays
        for the white-box references and autograd."""
        self._runner, self.backend, self.backend_note = runner, backend, note
        self._batch_size = int(batch_size) if batch_size else None

    def _forward_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        if self._runner is not None:
            return self._runner(chunk).to(self.device)
        return self._torch_chunk(chunk)

    def _torch_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        out = self.fn(chunk)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out))
        if out.dim() == 1:
            out = out[:, None]
        return out.to(self.device)

    def to_score(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, K) -> scores in ``score_mode`` space (differentiable: the white-box references use it)."""
        if self.outputs == "scores":
            return raw
        if self.outputs == "logits":
            if self.score_mode == "prob":
                return raw.softmax(-1)
            return raw.log_softmax(-1) if self.score_mode == "logprob" else raw
        # probabilities: logits are defined up to a constant, so log p serves both logit and logprob
        return raw if self.score_mode == "prob" else raw.clamp_min(1e-12).log()

    def predict(self, x: torch.Tensor, k: int = 5) -> list[tuple[int, str, float]]:
        """Top-k (index, label, probability) for one input (C, H, W); one query."""
        scores = self.view(score_mode="prob")(x.unsqueeze(0))[0]
        self.count(1)
        if self.outputs == "scores":
            scores = scores.softmax(-1) if scores.numel() > 1 else scores
        p, i = scores.topk(min(k, scores.numel()))
        labels = self.labels
        return [(int(j), labels[int(j)] if int(j) < len(labels) else str(int(j)), float(q)) for q, j in zip(p, i)]

    # ------------------------------------------------------------------ batch size
    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = self._fastest_batch_size()
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self._batch_size = int(value) if value else None

    def _fastest_batch_size(self) -> int:
        """Measured once per model, device and backend (``models.tuning``, cached on disk with the backend
        choice); callables get a fixed 64."""
        if self.module is None or self.input_shape is None:
            return 64
        forward = {(self.backend, torch.get_num_threads()): self._forward_chunk}
        key = f"{self.name}|{self.device}|{torch.__version__}|cl={self._channels_last}"
        return fastest(forward, self.input_shape, self.device, key=key, cache_dir=cache_root()).batch

    # ------------------------------------------------------------------ input and display
    def preprocess(self, *raw: Any) -> torch.Tensor:
        if self._preprocess is None:
            raise NotImplementedError(f"{self.name}: no preprocessing was given for this model")
        return self._preprocess(*raw)

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        if self._to_display is not None:
            return self._to_display(x)
        t = x.detach().float().cpu()
        t = normalise(t)
        if t.shape[0] == 1:
            t = t.expand(3, *t.shape[1:])
        return (t[:3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    def __repr__(self) -> str:
        return (f"BlackBox({self.name!r}, input_shape={self.input_shape}, classes={self.num_classes}, "
                f"score_mode={self.score_mode!r}, device={self.device})")


def explained_view(bb: "BlackBox", score_mode: str = EXPLAINED_SCORE) -> "BlackBox":
    """``bb`` as the methods should see it: a view explaining ``score_mode`` where the model has logits or
    probabilities to choose from, ``bb`` itself where it serves other scores."""
    return bb if bb.outputs == "scores" else bb.view(score_mode=score_mode)
