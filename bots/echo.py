"""Echo bot: plays back what it hears and returns every app message. Works on every transport."""

import asyncio


async def bot(transport):
    async def echo_messages():
        async for message in transport.messages():
            await transport.send_message(message)

    messages = asyncio.create_task(echo_messages())
    try:
        async for frame in transport.audio(sample_rate=16000):
            await transport.send_audio(frame)
    finally:
        messages.cancel()
