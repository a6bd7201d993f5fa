import sys

from tensorguess import watchdog

# Before anything else (importing TensorFlow takes seconds): a container whose
# client is gone should stop at any point of the run.
watchdog.start()

from tensorguess.cli import main  # noqa: E402

sys.exit(main())
