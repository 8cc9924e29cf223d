"""A worker process that dies at a named step of the charge path, for the crash-point tests.

    python -m creditgate.generation.tests.crash_worker celery [celery worker options...]
    python -m creditgate.generation.tests.crash_worker run JOB_ID

It sets Django up from the environment, and when CREDITGATE_TEST_CRASH_AT names a step of
`generation.signals.job_step`, the process calls os._exit(137) there: no `finally`, no cleanup,
no settlement, exactly as if it had been killed with SIGKILL. With CREDITGATE_TEST_CRASH_ONCE set
to a file path, only the first process to reach the step dies (it creates the file), so a
worker pool whose child died can be shown to redeliver and finish the task.

`celery` runs a real Celery worker; `run` runs one job in this process, as the in-process
runner's thread does.
"""

import os
import sys


def _arm() -> None:
    from creditgate.generation.signals import job_step

    step = os.environ.get("CREDITGATE_TEST_CRASH_AT")
    once = os.environ.get("CREDITGATE_TEST_CRASH_ONCE")
    if not step:
        return

    def crash(sender, job, step: str, **kwargs) -> None:
        if step != os.environ["CREDITGATE_TEST_CRASH_AT"]:
            return
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)

    job_step.connect(crash, weak=False)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    import django

    django.setup()
    _arm()
    mode, *rest = sys.argv[1:]
    if mode == "celery":
        from creditgate.celery import app

        app.worker_main(["worker", *rest])
    elif mode == "run":
        from creditgate.generation import services

        services.job_run(job_id=rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
