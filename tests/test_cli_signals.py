"""The one signal handler of the commands: SIGTERM as Ctrl-C, or a stop asked once and an abort the second time.

Signals are raised in this process (delivered to the main thread at once, as pytest runs tests there)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from reconciler.cli.signals import stop_on_signals


class ReachedOuterHandler(Exception):
    pass


def outer_handler(signum: int, frame: object) -> None:
    raise ReachedOuterHandler(signum)


@pytest.fixture(autouse=True)
def outer_sigterm() -> Iterator[None]:
    """The handler SIGTERM reaches unless the one under test took over (its default would end pytest)."""
    outer = signal.signal(signal.SIGTERM, outer_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_without_a_stop_sigterm_unwinds_like_ctrl_c_and_ctrl_c_is_left_alone() -> None:
    ctrl_c = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is ctrl_c
        signal.raise_signal(signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt")
    assert signal.getsignal(signal.SIGTERM) is outer_handler
    with pytest.raises(ReachedOuterHandler):
        signal.raise_signal(signal.SIGTERM)


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_with_a_stop_the_first_signal_asks_to_stop_and_the_second_aborts(
    first: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    ctrl_c = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    with stop_on_signals(stop, "Stopping: finishing what is in flight."):
        try:
            signal.raise_signal(first)
        except KeyboardInterrupt:  # caught here: an interrupt escaping a test would end the whole session
            pytest.fail("the first signal aborted instead of asking to stop")
        assert stop.is_set()
        assert capsys.readouterr().err == "\nStopping: finishing what is in flight.\n"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT if first == signal.SIGTERM else signal.SIGTERM)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == (outer_handler, ctrl_c)
    assert capsys.readouterr().err == ""  # the abort itself says nothing: main says "Aborted."
