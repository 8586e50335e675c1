"""paysession's schema as of SQLite version 7 and PostgreSQL version 8.

A later schema version of the stores comes with a migration of its own, naming the
versions it brings each backend to.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations
from django.db.migrations.operations.base import Operation

from paysession.contrib.django import schema_upgrade


class Migration(migrations.Migration):
    initial = True
    operations: ClassVar[list[Operation]] = [schema_upgrade(sqlite=7, postgresql=8)]
