"""The node with each localizer over real DDS: outputs, ~/heatmap, runtime label changes."""
from clip_perception.engine.model_loading import load_clip
from clip_perception.ros.environment import collected
from clip_perception.ros.messages import box_corners
from clip_perception.ros.node import ClipPerceptionNode
from colour_encoder import colour_scene, ColourEncoder
from node_helpers import image_message, Probe, RELIABLE, start_colour_node
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification

pytestmark = pytest.mark.slow

SQUARE = (40, 30, 100, 90)


class Outputs(Probe):
    """Publish images to the node; collect its detections, classifications and heatmaps."""

    def __init__(self, ros):
        super().__init__(ros, 'localizer_probe')
        self.heatmaps = []
        self.classifications = collected(self.node, Classification, 'classification', RELIABLE)
        self.heatmap_sub = self.node.create_subscription(
            Image, '/clip_perception/heatmap', self.heatmaps.append,
            QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))

    def ready(self):
        assert self.ros.wait_for_subscribers(self.image_pub), 'node never subscribed'
        assert self.ros.wait_for_publishers(self.heatmap_sub), 'no ~/heatmap publisher'

    def frame(self, pixels, frame_id):
        """Send one frame; wait for its detections and classification (and heatmap)."""
        outputs = (self.detections, self.classifications, self.heatmaps)
        counts = [len(received) for received in outputs]
        self.image_pub.publish(image_message(pixels, frame_id))
        assert self.ros.spin_until(lambda: all(
            len(received) > count for received, count in zip(outputs, counts)), 30.0), \
            'no answer'
        return self.detections[-1], self.classifications[-1], self.heatmaps[-1]


def test_dense_localizer_finds_the_square_and_follows_a_label_change(ros):
    node = start_colour_node(ros, ColourEncoder(), localizer='dense', map_size=96)
    out = Outputs(ros)
    out.ready()
    detections, classes, heatmap = out.frame(colour_scene(squares=[('red', *SQUARE)]), 'a')
    assert [d.results[0].hypothesis.class_id for d in detections.detections] == ['red']
    found = detections.detections[0]
    assert box_corners(found) == pytest.approx(SQUARE, abs=10.0)  # one 10 px patch
    assert found.header.frame_id == 'a' and heatmap.header.frame_id == 'a'
    assert classes.results[0].class_id == 'red'
    assert (heatmap.width, heatmap.height, heatmap.encoding) == (160, 120, 'rgb8')

    assert node.set_parameters([Parameter('labels', value=['blue', 'yellow'])])[0].successful
    detections, classes, _ = out.frame(colour_scene(squares=[('yellow', *SQUARE)]), 'b')
    assert [d.results[0].hypothesis.class_id for d in detections.detections] == ['yellow']
    assert sorted(r.class_id for r in classes.results) == ['blue', 'yellow']
    assert not node.set_parameters([Parameter('localizer', value='windows')])[0].successful


def test_gradcam_localizer_runs_a_real_clip_and_follows_a_label_change(ros, tiny_clip_dir):
    node = ClipPerceptionNode(
        encoder=load_clip(str(tiny_clip_dir), 'cpu'), context=ros.context,
        parameter_overrides=[Parameter(k, value=v) for k, v in {
            'labels': ['hammer', 'wrench'], 'localizer': 'gradcam', 'map_size': 64,
            'score_threshold': 0.0, 'image_reliability': 'reliable'}.items()])
    ros.add_node(node)
    assert node.start()
    out = Outputs(ros)
    out.ready()
    pixels = colour_scene(squares=[('red', *SQUARE)])
    detections, classes, heatmap = out.frame(pixels, 'first')
    assert sorted(r.class_id for r in classes.results) == ['hammer', 'wrench']
    # score_threshold 0: every label counts, each with at least its strongest region
    assert {d.results[0].hypothesis.class_id for d in detections.detections} == {
        'hammer', 'wrench'}
    assert (heatmap.width, heatmap.height) == (160, 120)
    assert node.set_parameters([Parameter('labels', value=['tape measure'])])[0].successful
    detections, classes, _ = out.frame(pixels, 'second')
    assert [r.class_id for r in classes.results] == ['tape measure']
    assert {d.results[0].hypothesis.class_id for d in detections.detections} == {
        'tape measure'}


def test_owl_localizer_loads_its_model_and_follows_a_label_change(ros, tiny_owl_dir):
    node = ClipPerceptionNode(context=ros.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in {
            'model': str(tiny_owl_dir), 'device': 'cpu', 'labels': ['hammer', 'wrench'],
            'localizer': 'owlvit', 'score_threshold': 0.0,
            'image_reliability': 'reliable'}.items()])
    ros.add_node(node)
    assert node.start()
    out = Outputs(ros)
    assert ros.wait_for_subscribers(out.image_pub), 'node never subscribed'
    pixels = colour_scene(squares=[('red', *SQUARE)])
    for frame_id, labels in [('first', ['hammer', 'wrench']), ('second', ['tape measure'])]:
        if frame_id == 'second':
            assert node.set_parameters([Parameter('labels', value=labels)])[0].successful
        count = len(out.classifications)
        out.image_pub.publish(image_message(pixels, frame_id))
        assert ros.spin_until(lambda: len(out.classifications) > count and
                              len(out.detections) > count, 30.0)
        assert out.detections[-1].header.frame_id == frame_id
        assert sorted(r.class_id for r in out.classifications[-1].results) == labels
        assert {d.results[0].hypothesis.class_id for d in out.detections[-1].detections} <= \
            set(labels)
    assert out.heatmaps == []  # no heatmap from a detector head


def test_a_clip_model_with_the_owl_localizer_cannot_start_and_says_why(ros, tiny_clip_dir,
                                                                       capfd):
    node = ClipPerceptionNode(context=ros.context, parameter_overrides=[
        Parameter('model', value=str(tiny_clip_dir)), Parameter('device', value='cpu'),
        Parameter('localizer', value='owlvit')])
    ros.add_node(node)
    assert not node.start()
    assert 'not OWL-ViT or OWLv2' in capfd.readouterr().err
