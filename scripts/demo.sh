#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up the venv (ROS 2 Jazzy's wheels; ROS_DISTRO=kilted: Kilted's),
# generate a sample bag (synthetic camera motion over a real photograph, with ground-truth homographies), process it
# offline, replay it through the live extractor node when rclpy works here, and print a summary (images sent, processed
# and dropped, keypoints, tracks, matches, accuracy against the ground truth, wall-clock timings with the cold start
# apart).
# Outputs in out/demo/ (OUT=...): debug.gif, report.png, debug_live.gif, report_live.png, summary JSON, bags.
#
#   scripts/demo.sh                          # bundled weights, config/extractor.yaml
#   ALIKE_WEIGHTS=/path/alike-t.pth scripts/demo.sh
#   ROS_DISTRO=kilted scripts/demo.sh        # on ROS 2 Kilted's wheels (.venv-kilted) instead of Jazzy's
#   ALIKE_SKIP_SETUP=1 scripts/demo.sh       # reuse an existing venv
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
FRAMES=${FRAMES:-60}
PARAMS=config/extractor.yaml
. scripts/ros_distro.sh

if [[ "${ALIKE_SKIP_SETUP:-0}" != 1 || ! -x $VENV/bin/python ]]; then
  echo "== setting up $VENV (scripts/setup_env.sh)"
  scripts/setup_env.sh
fi
. "$VENV/bin/activate"

weights_args=()
node_weights=()
if [[ -n "${ALIKE_WEIGHTS:-}" ]]; then
  weights_args=(--weights "$ALIKE_WEIGHTS")
  node_weights=(-p "weights:=$ALIKE_WEIGHTS")
fi

rm -rf "$OUT"
mkdir -p "$OUT"
echo "== sample bag"
python -m alike_ros bag make-sample "$OUT/sample" --frames "$FRAMES"

echo "== offline processing (every frame, deterministic)"
python -m alike_ros bag process "$OUT/sample" "$OUT/processed" --params "$PARAMS" "${weights_args[@]}" --debug-image
python -m alike_ros bag report "$OUT/processed" --plot "$OUT/report.png" --video "$OUT/debug.gif" \
  --json "$OUT/summary_offline.json" | grep -v '^wrote ' > "$OUT/summary_offline.txt"

live=0
if python -c "import rclpy, alike_ros.ros.node" 2> /dev/null; then
  echo "== live node, fed by bag replay (wall clock)"
  # A private DDS domain on this host only, so the demo neither disturbs nor hears other ROS graphs
  export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((150 + RANDOM % 80))} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  # On the wall clock, not use_sim_time + --clock: a --lockstep replay holds bag time still while the node works,
  # so sim-time latencies read ~0 and the node's timers (its /diagnostics) stop with the last frame.
  python -m alike_ros node --ros-args --params-file "$PARAMS" -r __ns:=/camera -r image:=image_raw \
    "${node_weights[@]}" > "$OUT/node.log" 2>&1 &
  node_pid=$!
  trap 'kill "$node_pid" 2> /dev/null || true' EXIT
  # --lockstep: the next image goes out once the node answered, so a slow machine still gets every frame.
  # The images are recorded too: their wall-clock receive times against their features' give each frame's
  # end-to-end latency (bag report).
  if python -m alike_ros bag replay "$OUT/sample" --wait-for-subscribers 180 --lockstep /camera/features \
    --record "$OUT/live" --record-topics /camera/image_raw:sensor_msgs/msg/Image \
    /camera/features:sensor_msgs/msg/PointCloud2 /camera/matches:sensor_msgs/msg/PointCloud2 \
    /diagnostics:diagnostic_msgs/msg/DiagnosticArray; then
    python -m alike_ros bag report "$OUT/live" --ground-truth "$OUT/sample" --plot "$OUT/report_live.png" \
      --video "$OUT/debug_live.gif" --json "$OUT/summary_live.json" | grep -v '^wrote ' > "$OUT/summary_live.txt"
    live=1
  else
    echo "live replay failed; node log:" >&2
    tail -n 20 "$OUT/node.log" >&2
  fi
  kill "$node_pid" 2> /dev/null || true
  wait "$node_pid" 2> /dev/null || true
  trap - EXIT
else
  echo "== rclpy or the node is not available here: offline processing only"
fi

echo
echo "== summary: $FRAMES frames of $OUT/sample; accuracy = matches within 3 px of the ground-truth motion;"
echo "   times are wall-clock ms; the first frame (cold start) is reported apart where frames are timed one by one"
echo "offline (bag process, every frame, one process):"
sed 's/^/  /' "$OUT/summary_offline.txt"
if [[ $live == 1 ]]; then
  echo "live node (bag replay --lockstep -> extractor node -> recorded by the replay):"
  sed 's/^/  /' "$OUT/summary_live.txt"
fi
if [[ $live == 1 ]]; then
  echo "videos: $OUT/debug.gif $OUT/debug_live.gif   plots: $OUT/report.png $OUT/report_live.png"
else
  echo "video: $OUT/debug.gif   plot: $OUT/report.png"
fi
