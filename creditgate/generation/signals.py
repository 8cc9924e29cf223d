"""Signals of the generation app."""

from django.dispatch import Signal

# Sent at each named point of a job's run, with `job` and `step`: "claimed" (the job is ours and
# its hold stands), "answered" (a provider call answered; nothing of it stored yet), "stored" (an
# answer's outputs committed while other calls are still out), "resumed" (an earlier run's lost
# answer was fetched), "settling" (all calls done, before the settlement's transaction) and
# "settled" (after it committed). No receiver in the service itself: the crash-point tests stop a
# worker process at these points.
job_step = Signal()
