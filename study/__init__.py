"""Human-evaluation studies of saliency maps (no streamlit): schema, validation, repository, lifecycle, design,
statistics and the admin password rules.

Errors a user may see are `StudyError`s: `InvalidInput` (a value refused by study.validate before it reached
the database) and `StudyClosed` (closed, past its deadline, or full); their messages are safe to show.

    from study import open_db, Repository
    repo = Repository(open_db())            # STUDY_DB_URL or sqlite:///data/study.db (WAL)
"""
from study.db import default_url, open_db
from study.lifecycle import StudyClosed
from study.repo import Repository
from study.spec import StudyError
from study.validate import InvalidInput

__all__ = ["default_url", "open_db", "Repository", "StudyError", "InvalidInput", "StudyClosed"]
