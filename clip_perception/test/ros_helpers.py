"""
rclpy helpers for tests: a private context, spinning until a condition, matching.

Waiting is always for a condition with a deadline, never a fixed sleep.
"""
import time
from typing import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class RosTestContext:
    """Owns one rclpy Context, its executor and the nodes created through it."""

    def __init__(self, domain_id: int):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []

    def node(self, name: str, **kwargs) -> Node:
        node = Node(name, context=self.context, **kwargs)
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def add_node(self, node: Node) -> Node:
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def spin_until(self, condition: Callable[[], bool], timeout_sec: float = 10.0) -> bool:
        """Spin the executor until `condition()` is true; False on timeout."""
        deadline = time.monotonic() + timeout_sec
        while True:
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(0.05, remaining))

    def wait_for_subscribers(self, publisher, count: int = 1, timeout_sec: float = 10.0) -> bool:
        """Until `publisher` is matched with at least `count` subscriptions."""
        return self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout_sec)

    def wait_for_publishers(self, subscription, count: int = 1, timeout_sec: float = 10.0) -> bool:
        """Until `subscription` is matched with at least `count` publishers."""
        return self.spin_until(lambda: subscription.get_publisher_count() >= count, timeout_sec)

    def destroy_nodes(self) -> None:
        """Destroy every node created through this context; the context stays."""
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self._nodes.clear()

    def shutdown(self) -> None:
        self.destroy_nodes()
        self.executor.shutdown()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
