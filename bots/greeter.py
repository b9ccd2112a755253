"""Greeter bot: plays a short chime when someone arrives, then echoes what it hears."""

from runner.audio import AudioFrame, tone

RATE = 16000
CHIME = (523.25, 659.25, 783.99)  # C5, E5, G5


def chime() -> AudioFrame:
    """Three rising notes with a little silence after each (generated, so no file is needed)."""
    pcm = b"".join(
        tone(frequency, 0.18, RATE, amplitude=0.25).pcm + AudioFrame.silence(0.05, RATE).pcm
        for frequency in CHIME
    )
    return AudioFrame(pcm, RATE)


async def bot(transport):
    if not await transport.wait_connected():
        return
    await transport.send_audio(chime())
    await transport.send_message({"type": "greeting", "text": "hello from runner"})
    async for frame in transport.audio(sample_rate=RATE):
        await transport.send_audio(frame)
