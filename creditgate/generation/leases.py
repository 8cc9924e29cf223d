"""Keeping a running job's lease alive while its worker waits on providers.

A claimed job holds a lease until `lease_expires_at`; recovery (services.jobs_sweep) takes over
only jobs whose lease lapsed. A provider call may take minutes, so one daemon thread per process
renews the leases of every job this process is running, every CREDITGATE_JOB_LEASE_SECONDS / 4,
in one UPDATE. A lease it can no longer renew (the job was taken over or finished elsewhere) is
marked lost, and the run stops writing: every write of a run is conditional on its lease token
anyway, this only lets it stop early.

Why a thread and not a Celery feature: Celery has no lease on a task (acks_late only redelivers
when a worker process dies, and with Redis only after the visibility timeout), and the
in-process runner needs the same guarantee without Celery.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from creditgate.generation.models import FINAL_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    job_id: uuid.UUID
    token: uuid.UUID | str | None  # the job's lease_token as the run claimed it (a UUID or its text)
    lost: threading.Event = field(default_factory=threading.Event)
    kept_since: float = field(default_factory=time.monotonic)


class _Keeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[object, Lease] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def keep(self, job_id, token) -> Lease:
        lease = Lease(job_id=job_id, token=token)
        with self._lock:
            self._leases[job_id] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="creditgate-leases", daemon=True)
                self._thread.start()
        self._wake.set()  # re-read the interval now (the lease length is a setting)
        return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            if self._leases.get(lease.job_id) is lease:
                del self._leases[lease.job_id]
            if not self._leases:
                self._wake.set()  # so the thread lets go of its database connection now

    def _run(self) -> None:
        while True:
            interval = max(settings.CREDITGATE_JOB_LEASE_SECONDS / 4, 0.05)
            self._wake.wait(interval)
            self._wake.clear()
            # A lease claimed less than half a beat ago runs for its whole length: it is renewed at
            # the next beat. (Renewing it now, as `keep` wakes this thread, could land after its
            # run already ended and its lease was let lapse: a dead worker's job kept from recovery.)
            fresh = time.monotonic() - interval / 2
            with self._lock:
                leases = [lease for lease in self._leases.values() if lease.kept_since <= fresh]
            if not leases:
                connection.close()  # idle: hold no database connection (a no-op when none is open)
                continue
            try:
                self.renew_round(leases)
            except DatabaseError:
                # Cannot reach the database: try again next beat on a fresh connection. If it stays
                # away past the lease, recovery takes the job over, which is the point.
                logger.warning("could not renew %d job lease(s)", len(leases), exc_info=True)
                connection.close()

    def renew_round(self, leases: list[Lease]) -> None:
        """Renew these leases; mark lost the ones this process no longer holds. A job that is
        final lost its lease to its own settlement (the run is ending, its lease not yet released
        when this beat came): that is not a takeover, and no warning is logged for it."""
        lost = renew(leases)
        finished = set(Job.objects.filter(pk__in=[lease.job_id for lease in lost], status__in=FINAL_STATUSES)
                       .values_list("pk", flat=True)) if lost else set()
        for lease in lost:
            with self._lock:
                if self._leases.get(lease.job_id) is lease:  # not released meanwhile
                    if lease.job_id not in finished:
                        logger.warning("job %s: its lease was taken over; this run stops", lease.job_id)
                    lease.lost.set()


def renew(leases: list[Lease]) -> list[Lease]:
    """Push the expiry of these leases forward; the ones this process no longer holds."""
    mine = Q()
    for lease in leases:
        mine |= Q(pk=lease.job_id, lease_token=lease.token)
    until = timezone.now() + dt.timedelta(seconds=settings.CREDITGATE_JOB_LEASE_SECONDS)
    renewed = Job.objects.filter(mine, status=JobStatus.RUNNING).update(lease_expires_at=until)
    if renewed == len(leases):
        return []
    held = set(Job.objects.filter(mine, status=JobStatus.RUNNING).values_list("pk", flat=True))
    return [lease for lease in leases if lease.job_id not in held]


_keeper = _Keeper()
keep = _keeper.keep
release = _keeper.release

