"""Evaluation of local features: HPatches-style homography metrics and video two-view geometry."""
