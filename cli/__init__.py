"""The ``saliency`` console command (pyproject [project.scripts]); ``python -m cli`` runs it from a checkout."""
