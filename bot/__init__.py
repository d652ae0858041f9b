"""The bot process: it acknowledges Telegram's and Stripe's webhooks (or polls Telegram) and
enqueues each update or event by task name. It imports only `core`; workers do everything else."""
