"""Repository: every read and write of a study goes through here (parameterised SQLAlchemy, no SQL strings).

Every argument passes study.validate first (one layer, the same refusals on SQLite and PostgreSQL); only
checked values reach a session. Writes are one short transaction each; reads go through a reader engine that
takes no write lock on SQLite. A save reads only ids (no image, no map: a study's trial list is cached per
process, it never changes) and writes ONE statement, the INSERT; the database's trigger counts it for the
participant inside that statement (db.COUNTER_TRIGGER). A response is unique per (participant, trial): a
retried submit returns the row saved first (idempotent), also when two submits race (the loser's
IntegrityError is turned into a read). A join takes its slot from the study's counter in one UPDATE (atomic
on both engines, so bursts never collide), which is also where the participant cap is enforced. The
lifecycle (study.lifecycle) is checked before a join and before a new answer. Participants only ever reach
their own study through (study code, token); nothing here returns another participant's answers to a
participant.
"""
from __future__ import annotations

import hashlib
import io
import json
import secrets
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, NamedTuple

import numpy as np
from PIL import Image
from sqlalchemy import Engine, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import maps
from study import validate as V
from study.db import has_counter_trigger, migrate, reader, single_statement
from study.design import trial_order
from study.lifecycle import FULL_MESSAGE, Lifecycle, StudyClosed, require_answers, require_joins
from study.lifecycle import status as lifecycle_status
from study.schema import Participant, Response, Stimulus, Study, Trial, utcnow
from study.spec import StimulusSpec, StudyError
from study.validate import InvalidInput, MAX_COMMENT

__all__ = ["Repository", "StimulusSpec", "StudyError", "InvalidInput", "StudyClosed", "load_npy", "npy_bytes",
           "png_bytes"]

_UNSET: Any = object()


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


check_code = V.code


def png_bytes(image: Any) -> bytes:
    """A stimulus image as PNG bytes: checked, since a stored study must show what was designed."""
    if isinstance(image, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(image)) as im:
                im.verify()
                side = max(im.size)
        except Exception as e:     # noqa: BLE001 - PIL raises many kinds on a non-image
            raise InvalidInput(f"A stimulus image is not a readable image ({type(e).__name__}).") from None
        if side > V.MAX_MAP_SIDE:
            raise InvalidInput(f"A stimulus image is too large: sides at most {V.MAX_MAP_SIDE} pixels.")
        return bytes(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(f"Stimulus image must be uint8 (H,W,3), got {arr.dtype} {arr.shape}.")
    V.saliency_shape(arr.shape[:2])
    return maps.png_bytes(arr)


def npy_bytes(saliency: np.ndarray) -> bytes:
    """A stimulus map as ``.npy`` bytes: checked, a participant must never be shown a broken map."""
    try:
        arr = np.asarray(saliency, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput("A saliency map must be an array of numbers.") from None
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise InvalidInput(f"Saliency map must be a finite (H,W) array, got shape {arr.shape}.")
    V.saliency_shape(arr.shape)
    return maps.npy_bytes(arr)


_TRIAL_CACHE_STUDIES = 64


class _TrialRow(NamedTuple):
    id: int
    kind: str
    stimulus_a_id: int
    stimulus_b_id: int | None


@dataclass(frozen=True)
class _StimulusRow:
    """A stimulus spec after validation, ready to insert (everything computed outside the write lock)."""
    input_name: str
    input_sha256: str
    image_png: bytes
    model: str
    method: str
    params_json: str
    seed: int
    target: int | None
    saliency_npy: bytes
    is_attention_check: bool


def _checked_stimulus(i: int, spec: Any) -> _StimulusRow:
    if not isinstance(spec, StimulusSpec):
        raise InvalidInput(f"Stimulus {i + 1} must be a StimulusSpec, not {type(spec).__name__}.")
    png = png_bytes(spec.image)
    return _StimulusRow(
        input_name=V.name(spec.input_name, f"input name of stimulus {i + 1}", V.MAX_INPUT_NAME),
        input_sha256=hashlib.sha256(png).hexdigest(), image_png=png,
        model=V.name(spec.model, f"model name of stimulus {i + 1}", V.MAX_MODEL),
        method=V.name(spec.method, f"method name of stimulus {i + 1}", V.MAX_METHOD),
        params_json=V.params_json(spec.params, f"parameters of stimulus {i + 1}"),
        seed=V.integer(spec.seed, f"seed of stimulus {i + 1}"),
        target=V.optional_integer(spec.target, f"target class of stimulus {i + 1}"),
        saliency_npy=npy_bytes(spec.saliency),
        is_attention_check=V.flag(spec.is_attention_check, f"attention-check flag of stimulus {i + 1}"))


load_npy = maps.load_npy


class Repository:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._reader = reader(engine)       # read-only sessions: no write lock on SQLite
        self._single = single_statement(engine)      # saves: one INSERT, no transaction around it on SQLite
        if not has_counter_trigger(engine):  # a database opened with create=False and never upgraded
            migrate(engine)
        # study id -> its trials [(id, kind, stimulus a, stimulus b)]: never changed once a study is created,
        # so each process reads them once per study instead of at every screen and save
        self._trial_cache: OrderedDict[int, tuple[_TrialRow, ...]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _read(self) -> Session:
        return Session(self._reader)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE on SQLite: the write lock up front, no upgrade deadlock)."""
        with Session(self.engine) as s, s.begin():
            yield s

    # ---------------------------------------------------------------- admin: create and read studies
    def create_study(self, title: str, stimuli: list[StimulusSpec], *, question: str,
                     instructions: str = "", likert: bool = True, pairwise: bool = True,
                     ask_comment: bool = False, seed: int = 0, deadline: datetime | None = None,
                     max_participants: int | None = None) -> str:
        """Store the stimuli and their trials; returns the new study code.

        Trials: a Likert rating of every stimulus (attention checks included) when `likert`; a forced choice
        between every two methods on the same input and model when `pairwise` (attention checks excluded).
        `deadline` (timezone-aware) and `max_participants` are optional (study.lifecycle).
        """
        title, question, instructions = V.study_texts(title, question, instructions)
        likert, pairwise = V.flag(likert, "Likert option"), V.flag(pairwise, "pairwise option")
        ask_comment = V.flag(ask_comment, "comment option")
        seed = V.integer(seed, "seed")
        deadline, cap = V.deadline(deadline), V.participant_cap(max_participants)
        if not (likert or pairwise):
            raise InvalidInput("Choose at least one question type (Likert rating or pairwise choice).")
        if not isinstance(stimuli, (list, tuple)) or not stimuli:
            raise InvalidInput("A study needs at least one stimulus.")
        if len(stimuli) > V.MAX_STIMULI:
            raise InvalidInput(f"A study holds at most {V.MAX_STIMULI:,} stimuli, got {len(stimuli):,}.")
        rows = [_checked_stimulus(i, spec) for i, spec in enumerate(stimuli)]    # before any transaction
        code = new_code()
        with self._write() as s:
            study = Study(code=code, title=title, instructions=instructions, question=question,
                          ask_comment=ask_comment, seed=seed, closed=False, deadline=deadline,
                          max_participants=cap, next_slot=0)
            s.add(study)
            stored = [Stimulus(study=study, **vars(r)) for r in rows]
            s.add_all(stored)
            s.flush()
            n_trials = 0
            if likert:
                for st in stored:
                    s.add(Trial(study=study, kind="likert", stimulus_a_id=st.id,
                                is_attention_check=st.is_attention_check))
                    n_trials += 1
            if pairwise:
                real = [st for st in stored if not st.is_attention_check]
                for i, a in enumerate(real):
                    for b in real[i + 1:]:
                        if (a.input_sha256, a.model) == (b.input_sha256, b.model) and a.method != b.method:
                            s.add(Trial(study=study, kind="pairwise", stimulus_a_id=a.id, stimulus_b_id=b.id))
                            n_trials += 1
            if n_trials == 0:
                raise InvalidInput("These settings give no trials (pairwise needs 2 methods on the same input).")
        return code

    def list_studies(self) -> list[dict]:
        now = utcnow()
        with self._read() as s:
            counts = dict(s.execute(select(Participant.study_id, func.count()).group_by(Participant.study_id)).all())
            out = []
            for st in s.scalars(select(Study).order_by(Study.id.desc())):
                lc = _lifecycle(st, now)
                out.append({"code": st.code, "title": st.title, "created_at": st.created_at,
                            "participants": counts.get(st.id, 0), "status": lc.state,
                            "deadline": lc.deadline, "cap": lc.cap})
            return out

    def study_summary(self, code: str) -> dict:
        code = V.code(code)
        with self._read() as s:
            study = self._study(s, code)
            stimuli = s.execute(select(Stimulus.id, Stimulus.input_name, Stimulus.model, Stimulus.method,
                                       Stimulus.params_json, Stimulus.is_attention_check)   # no image, no map
                                .where(Stimulus.study_id == study.id).order_by(Stimulus.id)).all()
            return {"code": study.code, "title": study.title, "question": study.question,
                    "stimuli": [{"id": x.id, "input": x.input_name, "model": x.model, "method": x.method,
                                 "params": json.loads(x.params_json), "attention_check": x.is_attention_check}
                                for x in stimuli],
                    "trials": len(self._trials(s, study.id)), "lifecycle": _lifecycle(study, utcnow())}

    # ---------------------------------------------------------------- admin: lifecycle
    def lifecycle(self, code: str) -> Lifecycle:
        """Open / closed / ended / full, with the deadline, the cap and the number joined."""
        code = V.code(code)
        with self._read() as s:
            return _lifecycle(self._study(s, code), utcnow())

    def set_lifecycle(self, code: str, *, closed: bool = _UNSET, deadline: datetime | None = _UNSET,
                      max_participants: int | None = _UNSET) -> Lifecycle:
        """Change what is given (None clears a deadline or a cap); returns the new lifecycle.

        A cap below the number already joined is allowed: the study is then full (nobody is removed)."""
        code = V.code(code)
        values = {}
        if closed is not _UNSET:
            values["closed"] = V.flag(closed, "closed flag")
        if deadline is not _UNSET:
            values["deadline"] = V.deadline(deadline)
        if max_participants is not _UNSET:
            values["max_participants"] = V.participant_cap(max_participants)
        with self._write() as s:
            study = self._study(s, code)
            if values:
                s.execute(update(Study).where(Study.id == study.id).values(**values)
                          .execution_options(synchronize_session=False))
        return self.lifecycle(code)

    def close_study(self, code: str) -> Lifecycle:
        """No new participants, no new answers; results stay readable and exportable."""
        return self.set_lifecycle(code, closed=True)

    def reopen_study(self, code: str) -> Lifecycle:
        return self.set_lifecycle(code, closed=False)

    # ---------------------------------------------------------------- participants
    def public_info(self, code: str) -> dict:
        """What anyone holding the study link may see before joining (no methods, no results)."""
        code = V.code(code)
        with self._read() as s:
            study = self._study(s, code)
            lc = _lifecycle(study, utcnow())
            return {"title": study.title, "instructions": study.instructions, "question": study.question,
                    "trials": len(self._trials(s, study.id)), "ask_comment": study.ask_comment,
                    "state": lc.state, "accepts_joins": lc.accepts_joins, "accepts_answers": lc.accepts_answers,
                    "message": lc.message}

    def join(self, code: str) -> str:
        """Register a new participant in study `code`; returns their secret token.

        The slot comes from one UPDATE ... SET next_slot = next_slot + 1 RETURNING next_slot on the study's
        row, guarded by the cap: concurrent joins queue on that row (PostgreSQL row lock, SQLite's write lock)
        instead of colliding, so a burst never refuses anyone while the study is open."""
        code = V.code(code)
        with self._read() as s:
            study = self._study(s, code)
        require_joins(_lifecycle(study, utcnow()))          # closed, past its deadline, or full
        t, pt = Study.__table__, Participant.__table__
        token = new_token()
        # two Core statements: the write lock (SQLite) or the study's row lock (PostgreSQL) is held briefly
        with self.engine.begin() as conn:
            taken = conn.execute(update(t).where(t.c.id == study.id, t.c.closed == false(),
                                                 or_(t.c.max_participants.is_(None),
                                                     t.c.next_slot < t.c.max_participants))
                                 .values(next_slot=t.c.next_slot + 1).returning(t.c.next_slot)).scalar()
            if taken is not None:
                conn.execute(insert(pt).values(study_id=study.id, token=token, slot=taken - 1, answered=0,
                                               created_at=utcnow()))
        if taken is not None:
            return token
        # the last place went to a concurrent join, or the study was closed meanwhile
        lc = self.lifecycle(code)
        raise StudyClosed(lc.message if not lc.accepts_joins else FULL_MESSAGE)

    def participant_state(self, code: str, token: str) -> ParticipantState:
        code, token = V.code(code), V.code(token, "participant token")
        with self._read() as s:
            study, p = self._participant(s, code, token)
            return ParticipantState(study.code, study.title, study.instructions, study.question,
                                    study.ask_comment, p.token, p.consented_at is not None, p.answered,
                                    len(self._trials(s, study.id)))

    def consent(self, code: str, token: str) -> None:
        code, token = V.code(code), V.code(token, "participant token")
        with self._read() as s:
            study, p = self._participant(s, code, token)
        if p.consented_at is None:
            require_answers(_lifecycle(study, utcnow()))
            pt = Participant.__table__
            with self._single.begin() as conn:     # one statement; a second consent changes nothing
                conn.execute(update(pt).where(pt.c.id == p.id, pt.c.consented_at.is_(None))
                             .values(consented_at=utcnow()))

    def order(self, code: str, token: str) -> list[tuple[int, bool]]:
        """The participant's (trial id, swapped) sequence: seeded, counterbalanced (study.design)."""
        code, token = V.code(code), V.code(token, "participant token")
        with self._read() as s:
            study, p = self._participant(s, code, token)
            return self._order(s, study, p)

    def _order(self, s: Session, study: Study, p: Participant) -> list[tuple[int, bool]]:
        return trial_order([(t.id, t.kind == "pairwise") for t in self._trials(s, study.id)], study.seed, p.slot)

    def next_trial(self, code: str, token: str) -> TrialView | None:
        """The first trial this participant has not answered (None when done); loads only its stimuli."""
        code, token = V.code(code), V.code(token, "participant token")
        with self._read() as s:
            study, p = self._participant(s, code, token)
            if p.consented_at is None:
                raise StudyError("Please give your consent first.")
            done = set(s.scalars(select(Response.trial_id).where(Response.participant_id == p.id)))
            order = self._order(s, study, p)
            trials = {t.id: t for t in self._trials(s, study.id)}
            for pos, (tid, swapped) in enumerate(order):
                if tid not in done:
                    t = trials[tid]             # only this trial's one or two stimuli are read
                    a = _view(s.get(Stimulus, t.stimulus_a_id))
                    b = _view(s.get(Stimulus, t.stimulus_b_id)) if t.stimulus_b_id is not None else None
                    left, right = (b, a) if (swapped and b is not None) else (a, b)
                    return TrialView(tid, pos, len(order), t.kind, left, right, swapped and b is not None)
            return None

    def save_response(self, code: str, token: str, trial_id: int, *, rating: int | None = None,
                      choice: int | None = None, comment: str = "") -> SavedResponse:
        """Save one answer in one transaction; a repeated submit of the same trial returns the first row.

        `choice` is 0 when stimulus a (the trial's first) is preferred, 1 for b (not screen sides). Reads
        (participant, trial ids, an earlier answer) take no write lock and load no image; the write is one
        INSERT (its trigger moves the participant's counter in the same statement). A repeated submit returns
        the first answer even after the study closed; a new answer to a closed or ended study raises
        StudyClosed."""
        code, token = V.code(code), V.code(token, "participant token")
        trial_id = V.integer(trial_id, "trial id", 1)
        rating, choice = V.answer(rating, choice)
        comment = V.text(comment, "comment", MAX_COMMENT)
        with self._read() as s:
            study, p = self._participant(s, code, token)
            if p.consented_at is None:
                raise StudyError("Please give your consent first.")
            trials = self._trials(s, study.id)
            old = self._response(s, p.id, trial_id)
            lc = _lifecycle(study, utcnow())
        if old is not None:
            return old                       # a repeated submit: the first answer stands
        require_answers(lc)                  # closed or past its deadline
        order = trial_order([(t.id, t.kind == "pairwise") for t in trials], study.seed, p.slot)
        pos = next((i for i, (tid, _) in enumerate(order) if tid == trial_id), None)
        if pos is None:
            raise StudyError("This trial is not part of your study.")
        kind = next(t.kind for t in trials if t.id == trial_id)
        if kind == "likert" and rating is None:
            raise InvalidInput("A rating trial needs a rating from 1 to 5.")
        if kind == "pairwise" and choice is None:
            raise InvalidInput("A choice trial needs choice 0 or 1.")
        rt = Response.__table__
        row = {"participant_id": p.id, "trial_id": trial_id, "position": pos, "rating": rating, "choice": choice,
               "shown_swapped": order[pos][1] and kind == "pairwise", "comment": comment, "created_at": utcnow()}
        try:
            # one statement: the unique constraint refuses a duplicate, and the database's trigger
            # (db.COUNTER_TRIGGER) moves the participant's counter inside the same statement
            # (no RETURNING: SQLite would hold its write lock until Python had read the returned row)
            with self._single.begin() as conn:
                new_id = conn.execute(insert(rt).values(**row)).inserted_primary_key[0]
            return SavedResponse(new_id, trial_id, rating, choice, comment, True)
        except IntegrityError:
            with self._read() as s:   # lost a race with an identical submit: return the winner's row
                old = self._response(s, p.id, trial_id)
            if old is None:
                raise
            return old

    # ---------------------------------------------------------------- admin: results
    def response_rows(self, code: str) -> list[dict]:
        """Every raw response of study `code`, one flat dict each (participants by number, never by token)."""
        code = V.code(code)
        with self._read() as s:
            study = self._study(s, code)
            stim = {x.id: x for x in s.execute(select(Stimulus.id, Stimulus.input_name, Stimulus.model,
                                                      Stimulus.method).where(Stimulus.study_id == study.id))}
            trials = {t.id: t for t in s.execute(select(Trial.id, Trial.kind, Trial.stimulus_a_id,
                                                        Trial.stimulus_b_id, Trial.is_attention_check)
                                                 .where(Trial.study_id == study.id))}
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
        code = V.code(code)
        with self._read() as s:
            study = self._study(s, code)
            return [{"participant": p.slot, "consented": p.consented_at is not None, "answered": p.answered,
                     "completed": p.completed_at is not None}
                    for p in s.scalars(select(Participant).where(Participant.study_id == study.id)
                                       .order_by(Participant.slot))]

    # ---------------------------------------------------------------- lookups (arguments already validated)
    @staticmethod
    def _study(s: Session, code: str) -> Study:
        study = s.scalar(select(Study).where(Study.code == code))
        if study is None:
            raise StudyError("No study with this code.")
        return study

    def _trials(self, s: Session, study_id: int) -> tuple[_TrialRow, ...]:
        """The study's trials in id order (the order trial_order was designed with): ids only, no images."""
        with self._cache_lock:
            if study_id in self._trial_cache:
                self._trial_cache.move_to_end(study_id)
                return self._trial_cache[study_id]
        rows = tuple(_TrialRow(*r) for r in s.execute(
            select(Trial.id, Trial.kind, Trial.stimulus_a_id, Trial.stimulus_b_id)
            .where(Trial.study_id == study_id).order_by(Trial.id)))
        with self._cache_lock:
            self._trial_cache[study_id] = rows
            while len(self._trial_cache) > _TRIAL_CACHE_STUDIES:
                self._trial_cache.popitem(last=False)
        return rows

    @staticmethod
    def _response(s: Session, participant_id: int, trial_id: int) -> SavedResponse | None:
        old = s.scalar(select(Response).where(Response.participant_id == participant_id,
                                              Response.trial_id == trial_id))
        return None if old is None else _saved(old, created=False)

    def _participant(self, s: Session, code: str, token: str) -> tuple[Study, Participant]:
        row = s.execute(select(Study, Participant).join(Participant, Participant.study_id == Study.id)
                        .where(Participant.token == token)).one_or_none()
        if row is None or row[0].code != code:
            self._study(s, code)           # "No study with this code." first, as before
            # same message for unknown and foreign tokens: a token of another study reveals nothing
            raise StudyError("This participant link is not valid for this study. "
                             "Open the study link again to start as a new participant.")
        return row[0], row[1]


def _lifecycle(study: Study, now: datetime) -> Lifecycle:
    return lifecycle_status(closed=bool(study.closed), deadline=study.deadline, cap=study.max_participants,
                            joined=study.next_slot or 0, now=now)


def _view(st: Stimulus) -> StimulusView:
    return StimulusView(st.id, st.image_png, load_npy(st.saliency_npy))


def _saved(r: Response, created: bool) -> SavedResponse:
    return SavedResponse(r.id, r.trial_id, r.rating, r.choice, r.comment, created)
