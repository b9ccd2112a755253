"""Where in the clock's period media arrives, so the shared frame clock can put its beats there.

Media connections are read on the frame clock's beats (runner.tickread): a frame waits from its
arrival to the next beat, almost a whole beat if the beats fall just before the arrivals and
almost nothing if they fall just after. A provider sends each call's frames on a steady phase,
so the readers note when the bytes of a read arrived (the kernel's receive time, which costs no
system call or wake-up of its own) and the clock moves its boundaries to where the frames they
read wait least. Moves are rare and under half a period: streams paced on the clock feel each
one as a frame sent that much early or late.
"""

from __future__ import annotations

BINS = 40  # arrival phases are counted in 0.5 ms bins of a 20 ms period
MARGIN = 0.001  # boundaries fall this long after the arrivals: a loop timer may fire a millisecond early
WORTH = 0.002  # mean wait a move must save: smaller ones are noise, and a move costs streams a jolt
ENOUGH = 8  # arrivals counted before a move is considered
FORGET = 0.5  # what each consideration keeps of the counts: the lock follows a provider's drift


class ArrivalPhase:
    """Counts of arrival phases (monotonic time modulo the period), and the move they call for."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._width = period / BINS
        self._counts = [0.0] * BINS
        self._total = 0.0

    def observe(self, arrival: float) -> None:
        """Bytes of a media connection arrived at `arrival` (monotonic seconds)."""
        self._counts[int(arrival % self.period / self._width) % BINS] += 1.0
        self._total += 1.0

    def move(self, offset: float) -> float | None:
        """How far to move boundaries now at `offset` (seconds, within half a period either way) so
        that the arrivals counted wait least for them; None to stay where they are."""
        if self._total < ENOUGH:
            return None
        counted = [(count, (index + 0.5) * self._width) for index, count in enumerate(self._counts) if count]
        here = self._mean_wait(counted, offset - MARGIN)
        best, best_wait = offset - MARGIN, here
        for index in range(BINS):
            point = index * self._width
            wait = self._mean_wait(counted, point)
            if wait < best_wait:
                best, best_wait = point, wait
        self._counts = [count * FORGET for count in self._counts]
        self._total *= FORGET
        if here - best_wait < WORTH:
            return None
        half = self.period / 2
        return (best + MARGIN - offset + half) % self.period - half

    def _mean_wait(self, counted: list[tuple[float, float]], point: float) -> float:
        """Mean wait of the counted arrivals for boundaries at phase `point`."""
        period = self.period
        return sum(count * ((point - phase) % period) for count, phase in counted) / self._total
