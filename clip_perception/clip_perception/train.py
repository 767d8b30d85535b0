"""`python -m clip_perception.train`: the contrastive trainer, tools.train."""
import sys

from clip_perception.tools.train import main

if __name__ == '__main__':
    sys.exit(main())
