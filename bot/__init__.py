"""The bot: the gateway and poller (acknowledge and enqueue), and the conversation that
workers run for each update (bot.conversation)."""
