"""`python -m clip_perception.demo`: the demo, tools.demo."""
import sys

from clip_perception.tools.demo import main

if __name__ == '__main__':
    sys.exit(main())
