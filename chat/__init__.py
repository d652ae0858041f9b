"""What a worker does with an update, and everything a person reads: who is talking, what they
asked, what to answer (`chat.messages` renders the domain's notices)."""
