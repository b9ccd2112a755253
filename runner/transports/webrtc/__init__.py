"""The `webrtc` transport: aiortc peers behind SmallWebRTC-compatible signaling, and the page at `/`.

Modules: `signaling` reads client requests, `registry` finds live peers and `/start` sessions,
`peer` is the Transport, `channel` the data-channel protocol, `tracks` the media tracks, `routes`
mounts it all. Only `routes` is imported by the server, and only when webrtc is selected, so
aiortc is never loaded otherwise.
"""
