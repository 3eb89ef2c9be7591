"""Repository: every read and write of a study goes through here (parameterised SQLAlchemy, no SQL strings).

Writes are one transaction each. A response is unique per (participant, trial): a retried submit returns the
row saved first (idempotent), also when two submits race (the loser's IntegrityError is turned into a read).
Participants only ever reach their own study through (study code, token); nothing here returns another
participant's answers to a participant.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

import maps
from study.design import trial_order
from study.schema import Participant, Response, Stimulus, Study, Trial, utcnow
from study.spec import StimulusSpec, StudyError

__all__ = ["Repository", "StimulusSpec", "StudyError", "load_npy", "npy_bytes", "png_bytes"]

_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_COMMENT = 2000
MAX_TITLE = 200
JOIN_RETRIES = 20


@dataclass(frozen=True)
class StimulusView:
    """What a participant sees: no method name, no model, no parameters."""
    id: int
    image_png: bytes
    saliency: np.ndarray


@dataclass(frozen=True)
class TrialView:
    trial_id: int
    position: int
    total: int
    kind: str                       # "likert" | "pairwise"
    left: StimulusView
    right: StimulusView | None
    swapped: bool                   # pairwise: stimulus b is on the left


@dataclass(frozen=True)
class SavedResponse:
    id: int
    trial_id: int
    rating: int | None
    choice: int | None
    comment: str
    created: bool                   # False: an earlier identical submit was returned


@dataclass(frozen=True)
class ParticipantState:
    study_code: str
    title: str
    instructions: str
    question: str
    ask_comment: bool
    token: str
    consented: bool
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


def new_code() -> str:
    return secrets.token_urlsafe(9)          # 72 random bits, 12 URL-safe characters


def new_token() -> str:
    return secrets.token_urlsafe(24)         # 192 random bits


def check_code(value: Any, what: str = "study code") -> str:
    if not isinstance(value, str) or not _CODE_RE.fullmatch(value):
        raise StudyError(f"Invalid {what}: expected 8-64 URL-safe characters.")
    return value


def png_bytes(image: Any) -> bytes:
    """A stimulus image as PNG bytes: checked, since a stored study must show what was designed."""
    if isinstance(image, (bytes, bytearray)):
        Image.open(io.BytesIO(image)).verify()          # raises on anything that is not an image
        return bytes(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise StudyError(f"Stimulus image must be uint8 (H,W,3), got {arr.dtype} {arr.shape}.")
    return maps.png_bytes(arr)


def npy_bytes(saliency: np.ndarray) -> bytes:
    """A stimulus map as ``.npy`` bytes: checked, a participant must never be shown a broken map."""
    arr = np.asarray(saliency, dtype=np.float32)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise StudyError(f"Saliency map must be a finite (H,W) array, got shape {arr.shape}.")
    return maps.npy_bytes(arr)


load_npy = maps.load_npy


class Repository:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ---------------------------------------------------------------- admin: create and read studies
    def create_study(self, title: str, stimuli: list[StimulusSpec], *, question: str,
                     instructions: str = "", likert: bool = True, pairwise: bool = True,
                     ask_comment: bool = False, seed: int = 0) -> str:
        """Store the stimuli and their trials; returns the new study code.

        Trials: a Likert rating of every stimulus (attention checks included) when `likert`; a forced choice
        between every two methods on the same input and model when `pairwise` (attention checks excluded).
        """
        title = (title or "").strip()
        if not title or len(title) > MAX_TITLE:
            raise StudyError(f"The title must have 1-{MAX_TITLE} characters.")
        if not (question or "").strip():
            raise StudyError("The question must not be empty.")
        if not (likert or pairwise):
            raise StudyError("Choose at least one question type (Likert rating or pairwise choice).")
        if not stimuli:
            raise StudyError("A study needs at least one stimulus.")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise StudyError("The seed must be an integer.")
        code = new_code()
        with Session(self.engine) as s, s.begin():
            study = Study(code=code, title=title, instructions=instructions or "", question=question.strip(),
                          ask_comment=bool(ask_comment), seed=seed)
            s.add(study)
            rows = []
            for spec in stimuli:
                if not spec.method or not spec.model or not spec.input_name:
                    raise StudyError("Every stimulus needs an input name, a model and a method.")
                png = png_bytes(spec.image)
                st = Stimulus(study=study, input_name=spec.input_name[:200],
                              input_sha256=hashlib.sha256(png).hexdigest(), image_png=png,
                              model=spec.model, method=spec.method,
                              params_json=json.dumps(spec.params, sort_keys=True, default=str),
                              seed=int(spec.seed), target=spec.target, saliency_npy=npy_bytes(spec.saliency),
                              is_attention_check=bool(spec.is_attention_check))
                s.add(st)
                rows.append(st)
            s.flush()
            n_trials = 0
            if likert:
                for st in rows:
                    s.add(Trial(study=study, kind="likert", stimulus_a_id=st.id,
                                is_attention_check=st.is_attention_check))
                    n_trials += 1
            if pairwise:
                real = [st for st in rows if not st.is_attention_check]
                for i, a in enumerate(real):
                    for b in real[i + 1:]:
                        if (a.input_sha256, a.model) == (b.input_sha256, b.model) and a.method != b.method:
                            s.add(Trial(study=study, kind="pairwise", stimulus_a_id=a.id, stimulus_b_id=b.id))
                            n_trials += 1
            if n_trials == 0:
                raise StudyError("These settings give no trials (pairwise needs 2 methods on the same input).")
        return code

    def list_studies(self) -> list[dict]:
        with Session(self.engine) as s:
            counts = dict(s.execute(select(Participant.study_id, func.count()).group_by(Participant.study_id)).all())
            return [{"code": st.code, "title": st.title, "created_at": st.created_at,
                     "participants": counts.get(st.id, 0)}
                    for st in s.scalars(select(Study).order_by(Study.id.desc()))]

    def study_summary(self, code: str) -> dict:
        with Session(self.engine) as s:
            study = self._study(s, code)
            return {"code": study.code, "title": study.title, "question": study.question,
                    "stimuli": [{"id": x.id, "input": x.input_name, "model": x.model, "method": x.method,
                                 "params": json.loads(x.params_json), "attention_check": x.is_attention_check}
                                for x in study.stimuli],
                    "trials": len(study.trials)}

    # ---------------------------------------------------------------- participants
    def public_info(self, code: str) -> dict:
        """What anyone holding the study link may see before joining (no methods, no results)."""
        with Session(self.engine) as s:
            study = self._study(s, code)
            return {"title": study.title, "instructions": study.instructions, "question": study.question,
                    "trials": len(study.trials), "ask_comment": study.ask_comment}

    def join(self, code: str) -> str:
        """Register a new participant in study `code`; returns their secret token."""
        check_code(code)
        for _ in range(JOIN_RETRIES):        # two joins racing for the same slot: the loser takes the next
            try:
                with Session(self.engine) as s, s.begin():
                    study = self._study(s, code)
                    slot = s.scalar(select(func.count()).select_from(Participant)
                                    .where(Participant.study_id == study.id))
                    token = new_token()
                    s.add(Participant(study_id=study.id, token=token, slot=slot))
                return token
            except IntegrityError:
                continue
        raise StudyError("Could not register the participant; please retry.")

    def participant_state(self, code: str, token: str) -> ParticipantState:
        with Session(self.engine) as s:
            study, p = self._participant(s, code, token)
            return ParticipantState(study.code, study.title, study.instructions, study.question,
                                    study.ask_comment, p.token, p.consented_at is not None, p.answered,
                                    len(study.trials))

    def consent(self, code: str, token: str) -> None:
        with Session(self.engine) as s, s.begin():
            _, p = self._participant(s, code, token)
            if p.consented_at is None:
                p.consented_at = utcnow()

    def order(self, code: str, token: str) -> list[tuple[int, bool]]:
        """The participant's (trial id, swapped) sequence: seeded, counterbalanced (study.design)."""
        with Session(self.engine) as s:
            study, p = self._participant(s, code, token)
            return self._order(study, p)

    @staticmethod
    def _order(study: Study, p: Participant) -> list[tuple[int, bool]]:
        trials = [(t.id, t.kind == "pairwise") for t in study.trials]
        return trial_order(trials, study.seed, p.slot)

    def next_trial(self, code: str, token: str) -> TrialView | None:
        """The first trial this participant has not answered (None when done)."""
        with Session(self.engine) as s:
            study, p = self._participant(s, code, token)
            if p.consented_at is None:
                raise StudyError("Please give your consent first.")
            done = set(s.scalars(select(Response.trial_id).where(Response.participant_id == p.id)))
            order = self._order(study, p)
            for pos, (tid, swapped) in enumerate(order):
                if tid not in done:
                    t = s.get(Trial, tid)
                    a, b = _view(t.stimulus_a), _view(t.stimulus_b) if t.stimulus_b is not None else None
                    left, right = (b, a) if (swapped and b is not None) else (a, b)
                    return TrialView(tid, pos, len(order), t.kind, left, right, swapped and b is not None)
            return None

    def save_response(self, code: str, token: str, trial_id: int, *, rating: int | None = None,
                      choice: int | None = None, comment: str = "") -> SavedResponse:
        """Save one answer in one transaction; a repeated submit of the same trial returns the first row.

        `choice` is 0 when stimulus a (the trial's first) is preferred, 1 for b (not screen sides).
        """
        if not isinstance(trial_id, int) or isinstance(trial_id, bool):
            raise StudyError("Invalid trial id.")
        comment = "" if comment is None else comment
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise StudyError(f"The comment must be text of at most {MAX_COMMENT} characters.")
        try:
            with Session(self.engine) as s, s.begin():
                study, p = self._participant(s, code, token)
                if p.consented_at is None:
                    raise StudyError("Please give your consent first.")
                order = self._order(study, p)
                pos = next((i for i, (tid, _) in enumerate(order) if tid == trial_id), None)
                if pos is None:
                    raise StudyError("This trial is not part of your study.")
                old = s.scalar(select(Response).where(Response.participant_id == p.id,
                                                      Response.trial_id == trial_id))
                if old is not None:
                    return _saved(old, created=False)
                kind = s.get(Trial, trial_id).kind
                if kind == "likert":
                    if not _is_int(rating) or not 1 <= rating <= 5 or choice is not None:
                        raise StudyError("A rating trial needs a rating from 1 to 5.")
                else:
                    if not _is_int(choice) or choice not in (0, 1) or rating is not None:
                        raise StudyError("A choice trial needs choice 0 or 1.")
                rating = None if rating is None else int(rating)
                choice = None if choice is None else int(choice)
                r = Response(participant_id=p.id, trial_id=trial_id, position=pos, rating=rating, choice=choice,
                             shown_swapped=order[pos][1] and kind == "pairwise", comment=comment.strip())
                s.add(r)
                s.flush()            # the unique constraint fires here, before the counter moves
                # atomic increment (no lost update between concurrent saves of one participant)
                s.execute(update(Participant).where(Participant.id == p.id)
                          .values(answered=Participant.answered + 1))
                answered = s.scalar(select(Participant.answered).where(Participant.id == p.id))
                if answered >= len(order):
                    s.execute(update(Participant).where(Participant.id == p.id).values(completed_at=utcnow()))
                return _saved(r, created=True)
        except IntegrityError:
            with Session(self.engine) as s:   # lost a race with an identical submit: return the winner's row
                _, p = self._participant(s, code, token)
                old = s.scalar(select(Response).where(Response.participant_id == p.id,
                                                      Response.trial_id == trial_id))
                if old is None:
                    raise
                return _saved(old, created=False)

    # ---------------------------------------------------------------- admin: results
    def response_rows(self, code: str) -> list[dict]:
        """Every raw response of study `code`, one flat dict each (participants by number, never by token)."""
        with Session(self.engine) as s:
            study = self._study(s, code)
            stim = {x.id: x for x in study.stimuli}
            trials = {t.id: t for t in study.trials}
            q = (select(Response, Participant.slot).join(Participant, Response.participant_id == Participant.id)
                 .where(Participant.study_id == study.id).order_by(Participant.slot, Response.position))
            rows = []
            for r, slot in s.execute(q):
                t = trials[r.trial_id]
                a, b = stim[t.stimulus_a_id], stim.get(t.stimulus_b_id)
                preferred = None if r.choice is None else (a if r.choice == 0 else b).method
                rows.append({"study": study.code, "participant": slot, "trial": t.id, "kind": t.kind,
                             "position": r.position, "input": a.input_name, "model": a.model,
                             "method_a": a.method, "method_b": b.method if b else "",
                             "attention_check": t.is_attention_check, "rating": r.rating, "choice": r.choice,
                             "preferred_method": preferred or "", "shown_swapped": r.shown_swapped,
                             "comment": r.comment, "created_at": r.created_at.isoformat()})
            return rows

    def participants(self, code: str) -> list[dict]:
        with Session(self.engine) as s:
            study = self._study(s, code)
            return [{"participant": p.slot, "consented": p.consented_at is not None, "answered": p.answered,
                     "completed": p.completed_at is not None}
                    for p in s.scalars(select(Participant).where(Participant.study_id == study.id)
                                       .order_by(Participant.slot))]

    # ---------------------------------------------------------------- lookups
    @staticmethod
    def _study(s: Session, code: str) -> Study:
        check_code(code)
        study = s.scalar(select(Study).where(Study.code == code)
                         .options(selectinload(Study.trials), selectinload(Study.stimuli)))
        if study is None:
            raise StudyError("No study with this code.")
        return study

    def _participant(self, s: Session, code: str, token: str) -> tuple[Study, Participant]:
        study = self._study(s, code)
        check_code(token, "participant token")
        p = s.scalar(select(Participant).where(Participant.token == token))
        # same message for unknown and foreign tokens: a token of another study reveals nothing
        if p is None or p.study_id != study.id:
            raise StudyError("This participant link is not valid for this study. "
                             "Open the study link again to start as a new participant.")
        return study, p


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _view(st: Stimulus) -> StimulusView:
    return StimulusView(st.id, st.image_png, load_npy(st.saliency_npy))


def _saved(r: Response, created: bool) -> SavedResponse:
    return SavedResponse(r.id, r.trial_id, r.rating, r.choice, r.comment, created)
