"""The job engine: every generation's life after the member's command returns.

`outcomes` (what it promises and needs: `Result`, `Notice`, the `Publisher`), `policy` (when to
poll, how long to back off), `steps` (one job moved forward by one state), `settlement` (who
pays when a job ends), `images` (result downloads), and `loop` (the `Engine`: claims, leases,
wake-ups, housekeeping).
"""

from bot.engine.loop import Engine
from bot.engine.outcomes import Notice, NoticeKind, Publisher, PublishError, Result, ResultImage
from bot.engine.policy import PollPolicy
from bot.engine.settlement import Charge
from bot.engine.steps import Steps, Tools

__all__ = [
    "Charge",
    "Engine",
    "Notice",
    "NoticeKind",
    "PollPolicy",
    "PublishError",
    "Publisher",
    "Result",
    "ResultImage",
    "Steps",
    "Tools",
]
