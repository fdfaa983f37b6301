"""``siyu serve`` with each step of ``pipeline.process`` timed, for ``bench_ingest.py --stages``.

    .venv/bin/python benchmarks/_serve_stages.py --port P [--threads N]

SIGUSR1 writes the times so far (``Stages.snapshot``, JSON) to the file named by
``SIYU_BENCH_STAGES``; the benchmark takes one before and one after its rounds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _stages import Stages  # noqa: E402


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    stages = Stages()
    stages.install()
    out = Path(os.environ["SIYU_BENCH_STAGES"])

    def dump(*_args) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(stages.snapshot()))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, dump)
    from siyu.cli import main as siyu

    siyu(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    main()
