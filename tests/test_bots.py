"""The example bots in bots/ work over the plain WebSocket transport."""

import asyncio
import json

import websockets

from runner.audio import dominant_frequency, tone
from runner.loader import load_bot

from conftest import ROOT, make_config, serve


async def test_greeter_plays_its_chime_then_echoes() -> None:
    bot = load_bot(str(ROOT / "bots" / "greeter.py"))
    async with serve(make_config(transport="websocket"), bot) as served:
        async with websockets.connect(f"{served.ws}/ws-client?sample_rate=16000") as ws:
            audio, texts = bytearray(), []

            async def read() -> None:
                async for message in ws:
                    if isinstance(message, bytes):
                        audio.extend(message)
                    else:
                        texts.append(json.loads(message))

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.8)
            first_note = bytes(audio[: int(0.15 * 16000) * 2])
            assert abs(dominant_frequency(first_note, 16000) - 523.25) < 8
            assert texts == [{"type": "greeting", "text": "hello from runner"}]
            before = len(audio)
            sent = tone(900, 0.4, 16000).pcm
            for offset in range(0, len(sent), 640):
                await ws.send(sent[offset:offset + 640])
            await asyncio.sleep(0.7)
            echoed = bytes(audio[before:])
            assert abs(dominant_frequency(echoed, 16000) - 900) < 8
            reader.cancel()
