"""Who pays for a job that ended: the rules that settle its reservation, in one place.

A job's credits were reserved before it was stored. When it ends, the reservation is settled by
one of three rules (`Charge`), always from what the job's row says; `reconcile` applies the same
rules later to jobs whose process died between their last write and settling.
"""

from __future__ import annotations

from enum import Enum

from bot.job_store import JobStore
from bot.jobs import Job, JobStatus
from bot.quotas import Ledger


class Charge(Enum):
    """How a job that ended without its images is paid for."""

    #: the hub never had it, or failed it: every credit goes back
    NOTHING = "nothing"
    #: the hub may have it (the outcome is unknown): the member's budget counts all of it
    IN_FULL = "in_full"
    #: the hub made the images and charged; the reservation was settled when they came
    AS_CHARGED = "as_charged"


async def settle(ledger: Ledger, job: Job, charge: Charge) -> tuple[int, int]:
    """Settle the job's reservation by `charge`; `(refunded, charged)` as the member is told."""
    if charge is Charge.NOTHING:
        if job.reservation_id is None:
            return 0, 0
        await ledger.settle(job.reservation_id, 0)
        return job.cost, 0
    if charge is Charge.IN_FULL:
        if job.reservation_id is not None:
            await ledger.settle(job.reservation_id, job.cost)
        return 0, job.cost
    return 0, job.charged_credits or 0


async def reconcile(jobs: JobStore, ledger: Ledger) -> int:
    """Settle held reservations of jobs that already reached a settled state; how many."""
    count = 0
    for job in await jobs.with_held_reservation():
        assert job.reservation_id is not None
        if job.status == JobStatus.CANCELLED or (
            job.status == JobStatus.FAILED and job.charged_credits is None
        ):
            await ledger.release(job.reservation_id)
        elif job.status == JobStatus.UNKNOWN:
            await ledger.settle(job.reservation_id, job.cost)
        else:  # succeeded, posted, or failed after the hub charged (e.g. posting failed)
            await ledger.settle(job.reservation_id, job.charged_credits or 0)
        count += 1
    return count
