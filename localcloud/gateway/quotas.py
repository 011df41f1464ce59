"""API Gateway's WebSocket service quotas, as the local gateway enforces them.

Not the product's own limits (`classwire.settings.Limits`: per user, connection and classroom): these are
what AWS imposes on every WebSocket API, which tests shrink to see them applied.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Self


class ChildArgument:
    """A frozen dataclass that crosses to the gateway's child process whole, as one JSON argument
    (`GatewayProcess`), so that no field falls back to its default there."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Self:
        """What `to_json` wrote; a field left out keeps its default, an unknown one is a TypeError."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class GatewayQuotas(ChildArgument):
    """API Gateway's WebSocket quotas; tests shrink them."""

    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    idle_timeout: float = 10 * 60
    max_duration: float = 2 * 3600
    integration_timeout: float = 29.0
