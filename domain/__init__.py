"""Business rules as plain functions: tests call them directly; tasks wrap them."""
