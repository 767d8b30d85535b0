"""ROS 2 node entry point (placeholder until the node is implemented)."""
import sys


def main(args=None) -> int:
    print('clip_perception_node: not implemented yet (see the README, "Status").',
          file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
