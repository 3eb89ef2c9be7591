"""What the study's design and its repository share: the stimulus to store and the error a user may see.

Apart from both so that the design (which computes stimuli) and the repository (which stores them and orders
trials with the design) import each other's vocabulary from below instead of from each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class StudyError(ValueError):
    """Bad input or an unknown / foreign study code or token (the message is safe to show)."""


@dataclass
class StimulusSpec:
    """One frozen stimulus to store: the displayed image (uint8 HxWx3 or PNG bytes) and its saliency map."""
    input_name: str
    image: Any
    model: str
    method: str
    saliency: np.ndarray
    params: dict = field(default_factory=dict)
    seed: int = 0
    target: int | None = None
    is_attention_check: bool = False
