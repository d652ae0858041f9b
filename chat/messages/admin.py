"""Admin job reports and what a person hears about their data."""

from __future__ import annotations
