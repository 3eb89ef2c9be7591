"""Human-evaluation studies of saliency maps (no streamlit): schema, repository, design and statistics.

    from study import open_db, Repository
    repo = Repository(open_db())            # STUDY_DB_URL or sqlite:///data/study.db (WAL)
"""
from study.db import default_url, open_db
from study.repo import Repository
from study.spec import StudyError

__all__ = ["default_url", "open_db", "Repository", "StudyError"]
