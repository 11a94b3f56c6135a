"""The time source of the components that keep timers, given to them so tests can drive it.

Production passes nothing and gets ``time.monotonic``: deadlines travel between processes in
messages, and the monotonic clock is the one every process on the machine shares. A test passes
its virtual-time event loop's clock (``tests/virtual_time.py``), so the component's instants and
the loop's timers run on one time line, and a timer an hour away fires without the wait.
"""

from collections.abc import Callable

Clock = Callable[[], float]  # seconds; a component's loop timers run at this clock's rate
