"""`python -m clip_perception.eval`: the evaluator, tools.evaluate."""
import sys

from clip_perception.tools.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
