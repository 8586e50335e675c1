"""paysession inside the frameworks a checkout is built on, each through an extra.

- :mod:`paysession.contrib.sqlalchemy` (``paysession[sqlalchemy]``): a SQLAlchemy 2
  ``Connection`` or ``Session`` for ``PaymentSessions.within``;
- :mod:`paysession.contrib.django` (``paysession[django]``): a Django app, its
  migrations and its connections for ``PaymentSessions.within``;
- :mod:`paysession.contrib.alembic` (``paysession[alembic]``): the schema from an
  Alembic revision.

The library never imports them: ``PaymentSessions.within`` loads the one a framework's
connection needs, and a project imports the others itself.
"""
