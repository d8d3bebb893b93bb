"""An IPMI BMC's address and login, shared by the power driver and the Serial-over-LAN console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from recovery.oob.base import BmcEndpoint, OobError, OobRefused, OobUnreachable, oob_error

IPMI_PORT = 623
RescueDevice = Literal["network", "optical"]

#: Words in pyghmi's messages for a login the BMC refused (wrong password, unknown user, role).
_REFUSALS = ("password", "unauthorized", "invalid role")
#: pyghmi's words for a login the BMC never answered.
_NO_ANSWER = {None, "timeout", "Session failed to initialize"}


@dataclass(frozen=True, kw_only=True)
class IpmiEndpoint(BmcEndpoint):
    """An IPMI BMC; ``rescue_device`` is where a rescue boot starts from."""

    port: int = IPMI_PORT
    rescue_device: RescueDevice = "network"

    def login(self) -> dict[str, Any]:
        """pyghmi's login arguments.

        Credentials as bytes: pyghmi files a login in progress under the
        credentials as given but removes it under their bytes form, so with
        str the entry outlives the login and the next session for this BMC
        is handed the one that was logged out.
        """
        return {
            "bmc": self.address,
            "userid": self.username.encode(),
            "password": self.password.encode(),
            "port": self.port,
        }


def ipmi_failure(endpoint: IpmiEndpoint, via: str, operation: str, message: str | None) -> OobError:
    """The error for a pyghmi failure message: no answer, a refused login, or what the BMC said."""
    if message in _NO_ANSWER:
        return oob_error(OobUnreachable, endpoint, via, operation, "the BMC did not answer (timed out)")
    if any(word in str(message).lower() for word in _REFUSALS):
        return oob_error(OobRefused, endpoint, via, operation, f"login refused: {message}")
    return oob_error(OobError, endpoint, via, operation, f"the BMC answered: {message}")
