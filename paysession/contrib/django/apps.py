"""The Django app of paysession: its migrations create paysession's tables."""

from __future__ import annotations

from django.apps import AppConfig


class PaysessionConfig(AppConfig):
    name = "paysession.contrib.django"
    label = "paysession"
    verbose_name = "paysession"
