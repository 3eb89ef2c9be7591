"""SQLAlchemy 2 schema: studies, stimuli (frozen maps), trials, participants, responses.

A stimulus freezes everything shown to a participant: the input image as displayed (PNG bytes) with its
sha256, the model, the method with its parameters and seed, and the saliency map itself (float32 .npy
bytes), so later changes to the engine or its cache never change what was rated.

A study also carries its lifecycle (closed flag, optional deadline and participant cap, see study.lifecycle)
and its join counter `next_slot`. Text column sizes come from study.validate, which refuses longer values
before they reach either database.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint, false, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from study.validate import MAX_CODE, MAX_INPUT_NAME, MAX_METHOD, MAX_MODEL, MAX_TITLE


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(MAX_CODE), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE))
    instructions: Mapped[str] = mapped_column(Text, default="")
    question: Mapped[str] = mapped_column(Text)
    ask_comment: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # lifecycle (study.lifecycle); added after the first release: db.migrate adds them to older databases
    closed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)   # UTC
    max_participants: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the join counter: each join takes next_slot and increments it in one UPDATE (atomic on both engines)
    next_slot: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="study", order_by="Stimulus.id")
    trials: Mapped[list[Trial]] = relationship(back_populates="study", order_by="Trial.id")


class Stimulus(Base):
    __tablename__ = "stimuli"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    input_name: Mapped[str] = mapped_column(String(MAX_INPUT_NAME))
    input_sha256: Mapped[str] = mapped_column(String(64))
    image_png: Mapped[bytes] = mapped_column(LargeBinary)          # the input as displayed (model geometry)
    model: Mapped[str] = mapped_column(String(MAX_MODEL))
    method: Mapped[str] = mapped_column(String(MAX_METHOD))                # never shown to participants
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    target: Mapped[int | None] = mapped_column(Integer, nullable=True)
    saliency_npy: Mapped[bytes] = mapped_column(LargeBinary)       # frozen (H,W) float32 map
    is_attention_check: Mapped[bool] = mapped_column(Boolean, default=False)
    study: Mapped[Study] = relationship(back_populates="stimuli")


class Trial(Base):
    """One screen: a Likert rating of stimulus a, or a forced choice between a and b."""
    __tablename__ = "trials"
    __table_args__ = (CheckConstraint("kind IN ('likert', 'pairwise')", name="trial_kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    stimulus_a_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"))
    stimulus_b_id: Mapped[int | None] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"), nullable=True)
    is_attention_check: Mapped[bool] = mapped_column(Boolean, default=False)
    study: Mapped[Study] = relationship(back_populates="trials")
    stimulus_a: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_a_id])
    stimulus_b: Mapped[Stimulus | None] = relationship(foreign_keys=[stimulus_b_id])


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "slot", name="participant_slot"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(MAX_CODE), unique=True, index=True)
    slot: Mapped[int] = mapped_column(Integer)   # 0,1,2... in order of joining: picks the counterbalanced order
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered: Mapped[int] = mapped_column(Integer, default=0)   # moved by db.COUNTER_TRIGGER inside each INSERT
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("participant_id", "trial_id", name="one_response_per_trial"),
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating_range"),
        CheckConstraint("choice IS NULL OR choice IN (0, 1)", name="choice_value"),
        CheckConstraint("(rating IS NULL) <> (choice IS NULL)", name="rating_xor_choice"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)              # 0-based screen index for this participant
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    choice: Mapped[int | None] = mapped_column(Integer, nullable=True)   # 0: stimulus a preferred, 1: b
    shown_swapped: Mapped[bool] = mapped_column(Boolean, default=False)  # b was shown on the left
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
