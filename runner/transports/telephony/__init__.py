"""Phone calls: Twilio, Telnyx, Plivo, Exotel and Vonage media streams over WebSocket.

One module per provider (codec, answer, signature check, REST hang-up), one transport class for
all of them (transport.py), provider detection (detect.py), signed stream tokens (tokens.py), who
may connect (admission.py), the answer webhooks (webhooks.py) and the routes (routes.py).
"""
