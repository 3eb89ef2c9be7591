"""The validation layer: the same hostile inputs against SQLite and PostgreSQL give the same outcomes, every
refusal an InvalidInput with a clear message (never a database error), every accepted value stored alike."""
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from study import validate as V
from study.db import open_db
from study.repo import InvalidInput, Repository, StimulusSpec, StudyError
from study_helpers import centre_map, photo

NUL, SURROGATE = "\x00", "\ud800"


def _specs(**over):
    """Two methods on one input; `over` replaces fields of the first stimulus."""
    img = photo("chelsea")
    a = StimulusSpec("chelsea", img, "tiny_cnn", "sobol", centre_map(), params={"grid": 8}, seed=1, target=285)
    b = StimulusSpec("chelsea", img, "tiny_cnn", "rise", np.roll(centre_map(), 3, axis=1))
    for k, v in over.items():
        setattr(a, k, v)
    return [a, b]


def _create(repo, title="Hostile", specs=None, **kw):
    kw.setdefault("question", "Which map explains better?")
    return repo.create_study(title, specs if specs is not None else _specs(), **kw)


class Ctx:
    """A study with comments on, and a fresh consented participant per answer case."""

    def __init__(self, repo):
        self.repo = repo
        self.code = _create(repo, ask_comment=True)

    def fresh(self):
        token = self.repo.join(self.code)
        self.repo.consent(self.code, token)
        return token, self.repo.next_trial(self.code, token)

    def save(self, **kw):
        token, tv = self.fresh()
        slot = len(self.repo.participants(self.code)) - 1          # fresh() just joined: the last slot
        answer = {"rating": 3} if tv.kind == "likert" else {"choice": 0}
        self.repo.save_response(self.code, token, kw.pop("trial_id", tv.trial_id), **{**answer, **kw})
        # what comes back from the database, not what was sent
        return [r["comment"] for r in self.repo.response_rows(self.code) if r["participant"] == slot]


def _summary(repo, code):
    s = repo.study_summary(code)
    return {"title": s["title"], "question": s["question"], "trials": s["trials"],
            "stimuli": [{k: v for k, v in x.items() if k != "id"} for x in s["stimuli"]]}


CASES = {
    # texts of a study
    "title NUL": lambda c: _create(c.repo, "a" + NUL + "b"),
    "title lone surrogate": lambda c: _create(c.repo, "a" + SURROGATE),
    "title 201 chars": lambda c: _create(c.repo, "t" * 201),
    "title 200 chars": lambda c: _summary(c.repo, _create(c.repo, "t" * 200)),
    "title blank": lambda c: _create(c.repo, "   "),
    "title line break": lambda c: _create(c.repo, "two\nlines"),
    "title unicode": lambda c: _summary(c.repo, _create(c.repo, "  Katzen 🐈 und Kaffee ☕ — ü  ")),
    "question NUL": lambda c: _create(c.repo, question="Q" + NUL),
    "question 2001 chars": lambda c: _create(c.repo, question="q" * 2001),
    "instructions surrogate": lambda c: _create(c.repo, instructions="read " + "\udc80"),
    "instructions escape code": lambda c: _create(c.repo, instructions="\x1b[31mred"),
    "instructions 10001 chars": lambda c: _create(c.repo, instructions="i" * 10_001),
    "instructions multiline": lambda c: _summary(c.repo, _create(c.repo, instructions="line 1\n\tline 2")),
    # names of a stimulus
    "model 201 chars": lambda c: _create(c.repo, specs=_specs(model="m" * 201)),
    "model 200 chars": lambda c: _summary(c.repo, _create(c.repo, specs=_specs(model="m" * 200))),
    "model NUL": lambda c: _create(c.repo, specs=_specs(model="tiny" + NUL)),
    "method 65 chars": lambda c: _create(c.repo, specs=_specs(method="x" * 65)),
    "method 64 chars": lambda c: _summary(c.repo, _create(c.repo, specs=_specs(method="x" * 64))),
    "method surrogate": lambda c: _create(c.repo, specs=_specs(method="sob" + SURROGATE)),
    "method line break": lambda c: _create(c.repo, specs=_specs(method="sob\nol")),
    "method empty": lambda c: _create(c.repo, specs=_specs(method="")),
    "method not text": lambda c: _create(c.repo, specs=_specs(method=7)),
    "input name 201 chars": lambda c: _create(c.repo, specs=_specs(input_name="i" * 201)),
    "params NUL value": lambda c: _create(c.repo, specs=_specs(params={"k": "a" + NUL})),
    "params surrogate key": lambda c: _create(c.repo, specs=_specs(params={SURROGATE: 1})),
    "params NaN": lambda c: _create(c.repo, specs=_specs(params={"k": float("nan")})),
    "params int 2**60": lambda c: _create(c.repo, specs=_specs(params={"k": 2**60})),
    "params non-text key": lambda c: _create(c.repo, specs=_specs(params={1: 2})),
    "params object": lambda c: _create(c.repo, specs=_specs(params={"k": object()})),
    "params nested ok": lambda c: _summary(c.repo, _create(c.repo, specs=_specs(
        params={"grid": np.int64(8), "sizes": [1, 2.5], "inner": {"on": True, "name": "ü"}}))),
    # integers
    "seed 2**31": lambda c: _create(c.repo, seed=2**31),
    "seed 2**31-1": lambda c: _summary(c.repo, _create(c.repo, seed=2**31 - 1)),
    "seed -1": lambda c: _create(c.repo, seed=-1),
    "seed 2**40": lambda c: _create(c.repo, seed=2**40),
    "seed 2**63": lambda c: _create(c.repo, seed=2**63),
    "seed 2**64": lambda c: _create(c.repo, seed=2**64),
    "seed float": lambda c: _create(c.repo, seed=1.5),
    "seed bool": lambda c: _create(c.repo, seed=True),
    "seed text": lambda c: _create(c.repo, seed="3"),
    "seed numpy int": lambda c: _summary(c.repo, _create(c.repo, seed=np.int64(7))),
    "stimulus seed 2**40": lambda c: _create(c.repo, specs=_specs(seed=2**40)),
    "stimulus target 2**40": lambda c: _create(c.repo, specs=_specs(target=2**40)),
    "stimulus target -1": lambda c: _create(c.repo, specs=_specs(target=-1)),
    "saliency 1-D": lambda c: _create(c.repo, specs=_specs(saliency=np.ones(5))),
    "image not an image": lambda c: _create(c.repo, specs=_specs(image=b"GIF89a-not-really")),
    "cap 0": lambda c: _create(c.repo, max_participants=0),
    "cap 2**40": lambda c: _create(c.repo, max_participants=2**40),
    "deadline naive": lambda c: _create(c.repo, deadline=datetime(2030, 1, 1)),
    "deadline date": lambda c: _create(c.repo, deadline=date(2030, 1, 1)),
    "deadline year 1970": lambda c: _create(c.repo, deadline=datetime(1970, 1, 1, tzinfo=timezone.utc)),
    # answers
    "comment NUL": lambda c: c.save(comment="nice" + NUL + "map"),
    "comment lone surrogate": lambda c: c.save(comment="nice " + "\udfff"),
    "comment 2001 chars": lambda c: c.save(comment="c" * 2001),
    "comment 2000 chars": lambda c: c.save(comment="c" * 2000),
    "comment bell": lambda c: c.save(comment="ding\x07"),
    "comment unicode multiline": lambda c: c.save(comment="  Gut 👍\nzweite Zeile — é  "),
    "comment not text": lambda c: c.save(comment=["a"]),
    "rating 2**63": lambda c: c.save(rating=2**63, choice=None),
    "choice 2**40": lambda c: c.save(choice=2**40, rating=None),
    "trial id 2**40": lambda c: c.save(trial_id=2**40),
    "trial id 0": lambda c: c.save(trial_id=0),
    # codes and tokens
    "code NUL": lambda c: c.repo.join("A" * 11 + NUL),
    "code surrogates": lambda c: c.repo.public_info(SURROGATE * 12),
    "code 65 chars": lambda c: c.repo.public_info("A" * 65),
    "token NUL": lambda c: c.repo.participant_state(c.code, NUL * 32),
    "token 2**40": lambda c: c.repo.next_trial(c.code, 2**40),
    # lifecycle settings
    "set cap -1": lambda c: c.repo.set_lifecycle(c.code, max_participants=-1),
    "set cap bool": lambda c: c.repo.set_lifecycle(c.code, max_participants=True),
    "set deadline naive": lambda c: c.repo.set_lifecycle(c.code, deadline=datetime(2030, 1, 1)),
    "set closed text": lambda c: c.repo.set_lifecycle(c.code, closed="yes"),
    "set cap and deadline ok": lambda c: c.repo.set_lifecycle(
        c.code, max_participants=500, deadline=datetime(2031, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2))))
    .describe().split(" · ", 1)[1],
}
ACCEPTED = {"title 200 chars", "title unicode", "instructions multiline", "model 200 chars", "method 64 chars",
            "params nested ok", "seed 2**31-1", "seed numpy int", "comment 2000 chars", "comment unicode multiline",
            "set cap and deadline ok"}


def _outcome(fn, ctx):
    try:
        result = fn(ctx)
    except StudyError as e:
        return ("refused", type(e).__name__, str(e))
    except Exception as e:     # noqa: BLE001 - a database error leaking through is the failure we look for
        return ("LEAKED", type(e).__name__, str(e)[:300])
    return ("ok", result)


def test_hostile_inputs_identical_on_sqlite_and_postgresql(tmp_path, postgres_server):
    outcomes = {}
    for engine_name, url in [("sqlite", f"sqlite:///{tmp_path / 'v.db'}"), ("postgresql", postgres_server())]:
        engine = open_db(url)
        ctx = Ctx(Repository(engine))
        outcomes[engine_name] = {label: _outcome(fn, ctx) for label, fn in CASES.items()}
        # nothing half-written by a refusal: the studies are the setup one plus the accepted creates
        outcomes[engine_name]["#studies"] = len(ctx.repo.list_studies())
        engine.dispose()
    lite, pg = outcomes["sqlite"], outcomes["postgresql"]
    assert [k for k in lite if lite[k] != pg[k]] == [], {k: (lite[k], pg[k]) for k in lite if lite[k] != pg[k]}
    leaked = {k: v for k, v in lite.items() if k != "#studies" and v[0] == "LEAKED"}
    assert leaked == {}
    accepted = {k for k, v in lite.items() if k != "#studies" and v[0] == "ok"}
    assert accepted == ACCEPTED
    refused = {k: v for k, v in lite.items() if k != "#studies" and v[0] == "refused"}
    assert {v[1] for v in refused.values()} == {"InvalidInput"}
    # the messages say what is wrong, in words a researcher or participant understands
    assert "NUL character" in refused["comment NUL"][2] and "comment" in refused["comment NUL"][2]
    assert "surrogate" in refused["title lone surrogate"][2]
    assert "at most 64" in refused["method 65 chars"][2] and "at most 200" in refused["model 201 chars"][2]
    assert "between 0 and 2,147,483,647" in refused["seed 2**40"][2]
    assert "whole number" in refused["seed float"][2]
    assert "time zone" in refused["deadline naive"][2]
    # accepted values come back exactly (stripped at the ends) from both databases
    assert lite["comment unicode multiline"] == ("ok", ["Gut 👍\nzweite Zeile — é"])
    assert lite["comment 2000 chars"] == ("ok", ["c" * 2000])
    assert lite["title unicode"][1]["title"] == "Katzen 🐈 und Kaffee ☕ — ü"
    assert lite["params nested ok"][1]["stimuli"][0]["params"] == {"grid": 8, "sizes": [1, 2.5],
                                                                   "inner": {"name": "ü", "on": True}}
    n_answer_cases = sum(k.startswith(("comment", "rating", "choice", "trial id")) for k in CASES)
    assert lite["set cap and deadline ok"] == ("ok", f"{n_answer_cases} joined of 500 · deadline 2031-05-06 05:08 UTC")
    assert lite["#studies"] == 1 + sum(k.startswith(("title", "instructions", "model", "method", "params",
                                                     "seed")) for k in ACCEPTED)


def test_validate_units():
    assert V.text("  a\tb\n ", "x", 10) == "a\tb"
    with pytest.raises(InvalidInput, match="tabs or line breaks"):
        V.name("a\tb", "model name", 10)
    with pytest.raises(InvalidInput, match="control"):
        V.text("\x7f", "comment", 10)
    with pytest.raises(InvalidInput, match="too long: 11 characters, at most 10"):
        V.text("é" * 11, "comment", 10)            # characters, not bytes
    assert V.integer(np.int32(5), "seed") == 5
    with pytest.raises(InvalidInput):
        V.integer(np.bool_(True), "seed")
    assert V.deadline(datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))) == \
        datetime(2030, 1, 1, 10, tzinfo=timezone.utc)
    assert V.answer(3, None) == (3, None) and V.answer(None, np.int64(1)) == (None, 1)
    for bad in [(None, None), (3, 0), (0, None), (6, None), (None, 2), ("3", None), (3.0, None)]:
        with pytest.raises(InvalidInput):
            V.answer(*bad)
    assert V.params_json({"b": 1, "a": [0.5, "x"]}) == '{"a": [0.5, "x"], "b": 1}'
    with pytest.raises(InvalidInput, match="too long"):
        V.params_json({"k": "x" * 30_000})
