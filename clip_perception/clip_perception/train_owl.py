"""`python -m clip_perception.train_owl`: the OWL-ViT trainer, tools.train_owl."""
import sys

from clip_perception.tools.train_owl import main

if __name__ == '__main__':
    sys.exit(main())
