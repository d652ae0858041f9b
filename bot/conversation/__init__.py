"""Interpreting updates in workers: who is talking, what they asked, what to answer."""
