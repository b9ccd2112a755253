"""`runner replay DIR bot.py`: a recorded session's caller side played into a bot again.

A conversation that went well once is the best regression test a voice bot has: the caller's
audio (with its pauses), DTMF and app messages are played back over the same transport, through
the synthetic callers `runner smoke` uses, the bot's new side is recorded as `--record` would,
and the turns are compared with the recording's.
"""
