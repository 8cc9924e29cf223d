"""Random ledger sequences at volume: the model of creditgate/credits/tests/ledger_machine.py run
for many independent sequences, each from its own seed, and the number of invariant breaks
printed (it must be 0). Any break prints its seed; `--seed S` replays exactly that sequence with
Hypothesis' report of the failing steps.

    .venv/bin/python bench/bench_ledger_model.py [--sequences 10000] [--steps 25] [--first-seed 1]
    .venv/bin/python bench/bench_ledger_model.py --seed 4242

Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file in a temporary directory.
Not a timing benchmark: it prints sequences per second only so a run's length can be planned.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='cg-ledger-model-')}/db.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    os.environ.setdefault("CREDITGATE_ENCRYPTION_KEYS", "Zm9yLWJlbmNobWFya3Mtb25seS0zMi1ieXRlcy1rZXk=")
    os.environ.setdefault("CREDITGATE_VAR_DIR", tempfile.mkdtemp(prefix="cg-ledger-model-var-"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DEBUG", "False")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run_sequence(seed: int, steps: int, *, replay: bool = False) -> None:
    """One sequence of the model, fully determined by `seed`; raises on an invariant break."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.stateful import run_state_machine_as_test

    from creditgate.credits.tests.ledger_machine import LedgerMachine

    machine = hypothesis_seed(seed)(type(f"LedgerMachineSeed{seed}", (LedgerMachine,), {}))
    phases = [Phase.generate, Phase.shrink] if replay else [Phase.generate]
    run_state_machine_as_test(machine, settings=settings(
        max_examples=1, stateful_step_count=steps, database=None, deadline=None, phases=phases,
        suppress_health_check=list(HealthCheck)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=25, help="operations per sequence")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, help="replay this one sequence, with Hypothesis' report")
    args = parser.parse_args()
    setup_django()

    if args.seed is not None:
        run_sequence(args.seed, args.steps, replay=True)
        print(f"seed {args.seed}: no invariant broken")
        return 0

    breaks: list[int] = []
    started = time.monotonic()
    for n, seed in enumerate(range(args.first_seed, args.first_seed + args.sequences), start=1):
        try:
            run_sequence(seed, args.steps)
        except Exception:  # noqa: BLE001 - count it, print it, go on
            breaks.append(seed)
            print(f"BREAK at seed {seed} (replay: bench/bench_ledger_model.py --seed {seed} --steps {args.steps})")
            traceback.print_exc(limit=3)
        if n % 500 == 0:
            print(f"  {n} sequences, {len(breaks)} break(s), {n / (time.monotonic() - started):.0f} sequences/s",
                  flush=True)

    from creditgate.credits import selectors

    problems = selectors.ledger_check()
    print(f"{args.sequences} sequences of up to {args.steps} operations (seeds {args.first_seed}.."
          f"{args.first_seed + args.sequences - 1}): {len(breaks)} invariant break(s); ledger_check afterwards: "
          f"{len(problems)} problem(s)")
    return 0 if not breaks and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
