"""`python -m clip_perception.make_dataset`: the synthetic data writer, tools.make_dataset."""
import sys

from clip_perception.tools.make_dataset import main

if __name__ == '__main__':
    sys.exit(main())
