"""LiveKit rooms: the bot joins a room with livekit.rtc; people join it with any LiveKit client.

`tokens` mints the access tokens (livekit-api), `rooms` creates and deletes rooms through
LiveKit's room service, `sdk` is the only module that imports livekit.rtc, `transport` is the
Transport a bot sees, `service` ties a session to its room, `routes` serves `/start`, and
`page` lets the browser page at `/` join a session's room.
"""
