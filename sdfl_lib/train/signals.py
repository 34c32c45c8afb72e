"""SIGTERM / SIGINT during training: finish the step, save the state, stop cleanly."""

from __future__ import annotations

import signal
import sys
import threading


class StopSignals:
    """Context manager recording the first SIGTERM/SIGINT in `signum` instead of dying.

    A second signal of either kind restores the default behaviour (a second Ctrl-C aborts at once).
    Outside the main thread (where Python cannot install handlers) it records nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nreceived {signal.Signals(signum).name}: saving the training state after this step"
              " (send it again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()
