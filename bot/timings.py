"""Every tuning knob of waiting, retrying and bounding, in one frozen object passed in.

Production uses the defaults (and `JOB_LEASE_SECONDS` from the settings: `Timings.from_settings`);
tests build their own with `dataclasses.replace` (shorter waits, smaller caps) and hand it to
`Services.open`, instead of patching module constants. The logic is the same either way: only
the clocks and caps differ. Rules of the product (a prompt's length, images per request, the 50 MB
of a reference, the 15 minutes of an interaction token) are not knobs and stay constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.config import Settings


@dataclass(frozen=True, slots=True)
class Timings:
    # -- the job engine -------------------------------------------------------------------------
    #: a claimed job's lease; renewed every third of it while a step runs
    lease_seconds: float = 120.0
    #: with nothing due, look again at least this often (new jobs wake the loop sooner)
    idle_wait: float = 30.0
    #: with every slot busy, look again at least this often (finishing steps wake it sooner)
    saturated_wait: float = 0.05
    #: a clean stop waits this long for steps under way (a submission in flight gets its answer)
    stop_grace: float = 30.0
    #: housekeeping (reconcile, orphaned reservations, pruning): at start and this often
    maintenance_interval: float = 3600.0
    #: a reservation with no job for this long is an orphan (its request died before storing it)
    orphan_age: timedelta = timedelta(minutes=10)
    #: polling gives up on a generation this long after it reached the hub (its sync limit: 800 s)
    max_generation_age: timedelta = timedelta(minutes=30)
    #: the poll policy without history: first poll after `poll_first`, then every `poll_step`;
    #: past `poll_slow_after` seconds, every `poll_slow_step` (see `bot.engine.policy.PollPolicy`)
    poll_first: float = 1.0
    poll_step: float = 3.0
    poll_slow_after: float = 120.0
    poll_slow_step: float = 10.0
    #: after the n-th error in a row a job waits `error_backoff * 2**n` seconds, at most the max
    error_backoff: float = 1.0
    error_backoff_max: float = 60.0

    # -- downloads ---------------------------------------------------------------------------------
    #: one generated image from the hub's URL: time and size caps
    download_timeout: float = 60.0
    max_image_bytes: int = 60 * 1024 * 1024
    #: one member's attachment from Discord's CDN: time and size caps (the size is also checked
    #: by Discord's declared size first, and by the bytes' own checks after)
    attachment_timeout: float = 30.0
    attachment_max_bytes: int = 50 * 1024 * 1024

    # -- the hub client -----------------------------------------------------------------------------
    #: each attempt's timeout, retries of idempotent requests, and the backoff between them
    hub_timeout: float = 30.0
    hub_retries: int = 3
    hub_backoff: float = 0.5

    # -- the database -------------------------------------------------------------------------------
    #: after a commit of a few writes, the next group transaction waits this long for more writes
    #: to share it (group commit), unless a few are waiting already (`bot.db.engine.GROUP_ENOUGH`)
    group_window: float = 0.05

    # -- the local queue ----------------------------------------------------------------------------
    #: queued jobs' positions are shown again at least this often
    queue_refresh_interval: float = 30.0
    #: a position edit the publisher skipped (throttled) is tried again after this long
    queue_retry_delay: float = 5.5

    # -- Discord --------------------------------------------------------------------------------------
    #: at most one status-message edit per job this often
    progress_interval: float = 5.0
    #: stop using an interaction token this long before Discord's 15 minutes run out
    token_margin: timedelta = timedelta(seconds=30)
    #: one moderator-log line per channel and missing permissions this often (seconds)
    report_every: float = 3600.0
    #: a "thinking…" answer goes out when /imagine's own answer takes longer than this
    early_answer: float = 0.15
    #: ... or this, in a burst: a "thinking…" answer costs one more request and an edit, CPU that
    #: every launch queued behind it waits for (500 /imagine in one second on SQLite: 165-396 real
    #: first answers at 0.15 s, 500 at 0.3 s; at 1 s, PostgreSQL's slower launches waited 1 s)
    early_answer_in_burst: float = 0.3
    #: a burst: this many launches under way at once (a steady 50 /imagine per second is 1-2)
    burst_launches: int = 8
    #: requests checked and started at once (the others wait, answered early)
    launch_concurrency: int = 128
    #: in a burst (see `burst_launches`), the engine starts no new steps for up to this long per
    #: pass (a burst of /imagine is answered first; submissions and status edits can wait)
    launch_priority: float = 0.5
    #: a reference's signed CDN URL with less than this left (seconds) is renewed before use
    url_margin: float = 600.0
    #: a form closed without sending is forgotten after this long: the imagine form, the key form
    form_timeout: float = 600.0
    key_form_timeout: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timings:
        """The production timings, with what the operator may set (`JOB_LEASE_SECONDS`)."""
        return cls(lease_seconds=settings.job_lease_seconds)

    def error_delay(self, errors: int) -> float:
        """Seconds to wait after the `errors`-th error in a row."""
        return float(min(self.error_backoff_max, self.error_backoff * 2.0 ** min(errors, 16)))
