"""Offers as the domain announces them: new deals to followers and nearby customers, photo results."""

from __future__ import annotations
