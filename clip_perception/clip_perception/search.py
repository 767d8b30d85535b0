"""`python -m clip_perception.search`: the offline search of a bag, tools.search."""
import sys

from clip_perception.tools.search import main

if __name__ == '__main__':
    sys.exit(main())
