"""`python -m clip_perception.fit_boxes`: the box-regressor fitting, tools.fit_boxes."""
import sys

from clip_perception.tools.fit_boxes import main

if __name__ == '__main__':
    sys.exit(main())
