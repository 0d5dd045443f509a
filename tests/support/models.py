"""Settings of the small models the tests train (ResNet-18, 128x128 shapes)."""
from maskrcnnlib.config import Config


def small_config():
    return Config(num_classes=3, class_names=["square", "disk"], backbone="resnet18",
                  image_min_dim=128, image_max_dim=128, rpn_anchor_scales=[8, 16, 32, 64, 128],
                  train_rois_per_image=32, rpn_train_anchors_per_image=64,
                  post_nms_rois_training=200, post_nms_rois_inference=100,
                  pre_nms_limit=1000, max_gt_instances=10, detection_min_confidence=0.5,
                  fpn_classif_fc_layers_size=256, top_down_pyramid_size=64,
                  images_per_gpu=2, learning_rate=0.01, train_bn=None).validate()
