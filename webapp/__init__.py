"""The Telegram Mini App: the map of deals, the business dashboard and the admin view (`webapp`
process). It imports none of bot, chat or tasks: it calls the domain, and hands work to the
queues by task name (core.handover), as the chat does."""
