"""`python -m clip_perception.index`: bag archives into a memory store, tools.index."""
import sys

from clip_perception.tools.index import main

if __name__ == '__main__':
    sys.exit(main())
