"""Training ALIKE from scratch on synthetic homography pairs of ordinary photos."""
