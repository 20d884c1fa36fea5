import os

from django.db import models


class ProtectedTextField(models.TextField):
    """A text field whose column pgcloak protects: the application reads and
    writes text, the column in PostgreSQL is bytea (pgcloak's ciphertext), so
    migrations must create it as bytea. ORM_PROTECTED=0 (the plaintext twin
    of the ORM matrix) creates text instead."""

    def db_type(self, connection):
        return "bytea" if os.environ.get("ORM_PROTECTED") == "1" else "text"
