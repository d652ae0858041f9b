"""Shared plumbing: settings, logging, database sessions, Telegram and Stripe I/O."""
