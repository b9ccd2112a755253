"""Daily rooms: the bot joins a room with daily-python; people join it through Daily.

`rest` talks to Daily's REST API (rooms, tokens, dial-in), `rooms` decides what to ask it for,
`sdk` is the only module that imports daily-python, `transport` is the Transport a bot sees,
`service` ties a session to its room, and `routes` serves `/start`, `/daily` and `/daily/dialin`.
"""
