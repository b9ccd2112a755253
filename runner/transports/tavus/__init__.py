"""Tavus video avatars: the bot's voice, spoken by a Tavus replica the person sees, in the Daily
room of a Tavus conversation.

A thin layer on the Daily transport: `rest` talks to Tavus's API (conversations, personas),
`transport` is the Daily transport with the bot's audio sent to the replica as app messages
instead of a published track, `service` creates and ends a conversation per session, and
`routes` serves `/start` (and `/tavus` in dev).
"""
