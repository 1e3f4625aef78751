"""Diagnostic session state: active session, S3 timer, communication control, DTC setting.

Pure state on an injected clock: the server calls :meth:`SessionState.expired`
with the time of each event, so S3 is tested with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT = 0x01
PROGRAMMING = 0x02
EXTENDED = 0x03
NAMES = {DEFAULT: "default", PROGRAMMING: "programming", EXTENDED: "extended"}

#: CommunicationControl: enableRxAndTx on normal communication messages
COMM_ENABLED = (0x00, 0x01)


@dataclass
class SessionState:
    s3: float  # session timeout, s
    last_activity: float = 0.0
    session: int = DEFAULT
    #: (controlType, communicationType) of the last accepted 0x28
    comm_control: tuple[int, int] = COMM_ENABLED
    dtc_setting_on: bool = True

    @property
    def name(self) -> str:
        return NAMES[self.session]

    def touch(self, now: float) -> None:
        """Restart S3 (a request was handled or a response completed)."""
        self.last_activity = now

    def expired(self, now: float) -> bool:
        return self.session != DEFAULT and now - self.last_activity > self.s3

    def enter(self, session: int) -> None:
        self.session = session
        if session == DEFAULT:
            # leaving to default ends what the non-default session had switched off
            self.comm_control = COMM_ENABLED
            self.dtc_setting_on = True
