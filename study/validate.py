"""The one validation layer in front of the repository: every text, number, name and date is checked here,
before it reaches a database, so SQLite and PostgreSQL see only values both store the same way.

Why each rule exists (measured on both engines before these checks):
- NUL characters: PostgreSQL refuses them in text ("A string literal cannot contain NUL"), SQLite stores them.
- lone surrogates ("\\ud800"): not encodable as UTF-8; both drivers raise their own encoding errors.
- lengths: PostgreSQL enforces VARCHAR(n), SQLite ignores it; the limits below are the schema's (schema.py
  reads them from here), counted in characters on both.
- integers: PostgreSQL INTEGER is 32-bit (2**40 overflows), SQLite 64-bit (2**63 overflows); seeds, targets,
  ids and caps are bounded to the 32-bit range on both.

Every refusal is an `InvalidInput` (a `StudyError`) with a message that names the field and the rule, safe to
show on a page as it is.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

import numpy as np

from study.spec import StudyError

# lengths in characters (schema.py sizes its VARCHAR columns from these)
MAX_CODE = 64
MAX_TITLE = 200
MAX_QUESTION = 2_000
MAX_INSTRUCTIONS = 10_000
MAX_COMMENT = 2_000
MAX_INPUT_NAME = 200
MAX_MODEL = 200
MAX_METHOD = 64
MAX_PARAMS_JSON = 20_000
INT32_MAX = 2**31 - 1
MAX_PARTICIPANTS = 1_000_000
MAX_STIMULI = 10_000
MAX_MAP_SIDE = 4096

_CODE_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
# C0/C1 control characters other than tab and newlines: invisible, and NUL breaks PostgreSQL
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAK_RE = re.compile(r"[\t\n\r\u2028\u2029]")


class InvalidInput(StudyError):
    """A value refused before it reached the database (the message names the field and the rule)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def text(value: Any, what: str, max_len: int, *, required: bool = False, multiline: bool = True,
         strip: bool = True) -> str:
    """A checked text: str, valid Unicode (no lone surrogates), no NUL or other control characters (tab and
    line breaks only where `multiline`), at most `max_len` characters; None counts as empty."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text, not {type(value).__name__}.")
    if "\x00" in value:
        raise InvalidInput(f"The {what} contains a NUL character (\\0), which cannot be stored; remove it.")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise InvalidInput(f"The {what} contains an invalid character (a lone UTF-16 surrogate); remove it.")
    if _CONTROL_RE.search(value) or (not multiline and _LINE_BREAK_RE.search(value)):
        kinds = "control characters" if multiline else "control characters, tabs or line breaks"
        raise InvalidInput(f"The {what} must not contain {kinds}.")
    if strip:
        value = value.strip()
    if required and not value:
        raise InvalidInput(f"The {what} must not be empty.")
    if len(value) > max_len:
        raise InvalidInput(f"The {what} is too long: {len(value)} characters, at most {max_len}.")
    return value


def name(value: Any, what: str, max_len: int) -> str:
    """A one-line, non-empty name (model, method, input, parameter)."""
    return text(value, what, max_len, required=True, multiline=False)


def integer(value: Any, what: str, lo: int = 0, hi: int = INT32_MAX) -> int:
    """An int (numpy integers too; not bool, not float) in [lo, hi]."""
    if not _is_int(value):
        raise InvalidInput(f"The {what} must be a whole number, not {type(value).__name__}.")
    v = int(value)
    if not lo <= v <= hi:
        raise InvalidInput(f"The {what} must be between {lo:,} and {hi:,}, got {v:,}.")
    return v


def optional_integer(value: Any, what: str, lo: int = 0, hi: int = INT32_MAX) -> int | None:
    return None if value is None else integer(value, what, lo, hi)


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInput(f"The {what} must be True or False, not {type(value).__name__}.")
    return bool(value)


def code(value: Any, what: str = "study code") -> str:
    """A study code or participant token: 8-64 URL-safe ASCII characters."""
    if not isinstance(value, str) or not _CODE_RE.fullmatch(value):
        raise InvalidInput(f"Invalid {what}: expected 8-64 URL-safe characters.")
    return value


def _json_value(v: Any, where: str, depth: int = 0) -> Any:
    if depth > 8:
        raise InvalidInput(f"The parameters are nested too deeply at {where}.")
    if v is None or isinstance(v, (bool, np.bool_)):
        return None if v is None else bool(v)
    if _is_int(v):
        v = int(v)
        if abs(v) > 2**53:
            raise InvalidInput(f"The parameter {where} is too large ({v}); at most 2**53 in magnitude.")
        return v
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            raise InvalidInput(f"The parameter {where} must be a finite number, got {v}.")
        return float(v)
    if isinstance(v, str):
        return text(v, f"parameter {where}", MAX_PARAMS_JSON, strip=False)
    if isinstance(v, (list, tuple)):
        return [_json_value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise InvalidInput(f"Parameter names in {where} must be text, not {type(k).__name__}.")
            k = name(k, f"parameter name in {where}", MAX_METHOD)
            out[k] = _json_value(x, f"{where}.{k}", depth + 1)
        return out
    raise InvalidInput(f"The parameter {where} must be a number, text, list or mapping, "
                       f"not {type(v).__name__}.")


def params_json(params: Any, what: str = "method parameters") -> str:
    """Method parameters as canonical JSON (sorted keys, ASCII): plain numbers, texts, lists and mappings."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(f"The {what} must be a mapping of names to values, not {type(params).__name__}.")
    out = json.dumps(_json_value(params, "params"), sort_keys=True, allow_nan=False)
    if len(out) > MAX_PARAMS_JSON:
        raise InvalidInput(f"The {what} are too long: {len(out)} characters of JSON, at most {MAX_PARAMS_JSON}.")
    return out


def deadline(value: Any) -> datetime | None:
    """None (no deadline) or a timezone-aware datetime, returned in UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput(f"The deadline must be a date and time, not {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("The deadline needs a time zone (e.g. datetime(..., tzinfo=timezone.utc)).")
    value = value.astimezone(timezone.utc)
    if not 2000 <= value.year <= 9998:
        raise InvalidInput(f"The deadline must be between the years 2000 and 9998, got {value.year}.")
    return value


def study_texts(title: Any, question: Any, instructions: Any) -> tuple[str, str, str]:
    """A study's title, question and instructions, checked (the designer checks them before computing maps)."""
    return (text(title, "title", MAX_TITLE, required=True, multiline=False),
            text(question, "question", MAX_QUESTION, required=True),
            text(instructions, "instructions", MAX_INSTRUCTIONS))


def participant_cap(value: Any) -> int | None:
    """None (no cap) or a number of participants in [1, 1,000,000]."""
    return optional_integer(value, "participant cap", 1, MAX_PARTICIPANTS)


def answer(rating: Any, choice: Any) -> tuple[int | None, int | None]:
    """Exactly one of a rating 1-5 and a choice 0/1 (which one the trial needs is checked by the repository)."""
    if (rating is None) == (choice is None):
        raise InvalidInput("Give exactly one answer: a rating (1-5) or a choice (0 or 1).")
    if rating is not None:
        return integer(rating, "rating", 1, 5), None
    return None, integer(choice, "choice", 0, 1)


def saliency_shape(shape: tuple) -> None:
    if len(shape) != 2 or not all(1 <= n <= MAX_MAP_SIDE for n in shape):
        raise InvalidInput(f"A saliency map must be (H,W) with sides 1-{MAX_MAP_SIDE}, got shape {shape}.")
